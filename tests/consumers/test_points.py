"""守约激励 points ledger and levels (consumers.rewards): awards, streaks, levels, perks, breaches, expiry, races."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from bnpl.exceptions import NotAllowed, ValidationFailed
from consumers import rewards
from consumers import rewards_policy as policy
from consumers.choices import LimitChangeReason, PointsKind, RewardLevel
from consumers.models import Consumer, CreditProfile, LevelChange, LimitChange, PerkUse, PointsEntry, RewardAccount
from consumers.services import credit_profile_pause
from tests.factories import ConsumerFactory


def _t0() -> datetime:
    return datetime(2026, 1, 10, 4, 0, tzinfo=timezone.get_fixed_timezone(0))


def _keep(consumer: Consumer, order_id: int, now: datetime | None = None) -> rewards.RewardOutcome:
    return rewards.rewards_on_promise_kept(actor=None, consumer_id=consumer.pk, order_id=order_id, now=now)


def _account(consumer: Consumer) -> RewardAccount:
    return RewardAccount.objects.get(consumer=consumer)


def _balance_is_sum(consumer: Consumer) -> int:
    cached, total = rewards.points_balance_check(consumer)
    assert cached == total
    return cached


def _give(consumer: Consumer, points: int, key: str, now: datetime | None = None) -> None:
    rewards.points_award(
        actor=None, consumer=consumer, points=points, kind=PointsKind.ADJUSTMENT, key=key, reason="test", now=now
    )


# --------------------------------------------------------------------------- awards and streaks


@pytest.mark.django_db
def test_a_kept_promise_earns_the_policy_points_once_per_order(consumer):
    now = timezone.now()

    outcome = _keep(consumer, 501, now)
    replay = _keep(consumer, 501, now)

    assert outcome.points == policy.POINTS_PER_KEPT == 10
    assert replay.points == 0
    entry = PointsEntry.objects.get()
    assert (entry.kind, entry.points, entry.key, entry.order_id) == ("kept", 10, "kept:501", 501)
    assert entry.expires_at == policy.add_months(now, 12)
    account = _account(consumer)
    assert (account.points_balance, account.streak, account.promise_value) == (10, 1, 1)
    assert _balance_is_sum(consumer) == 10


@pytest.mark.django_db
def test_a_streak_earns_bonus_points_from_the_third_kept_promise(consumer):
    earned = [_keep(consumer, 600 + i).points for i in range(1, 11)]

    # 1st, 2nd: 10; 3rd, 4th: 10 + 5; 5th–9th: 10 + 10; 10th: 10 + 20.
    assert earned == [10, 10, 15, 15, 20, 20, 20, 20, 20, 30]
    assert PointsEntry.objects.filter(kind=PointsKind.STREAK).count() == 8
    assert _balance_is_sum(consumer) == sum(earned) == 180
    assert _account(consumer).best_streak == 10


@pytest.mark.django_db
def test_a_breach_ends_the_streak_so_the_bonus_starts_over(consumer):
    for i in range(4):
        _keep(consumer, 700 + i)
    rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=799)

    assert _keep(consumer, 710).points == 10
    account = _account(consumer)
    assert (account.streak, account.best_streak) == (1, 4)


# --------------------------------------------------------------------------- levels and perks


@pytest.mark.django_db
def test_the_tenth_kept_promise_promotes_to_expert_and_raises_the_limit_one_band_step(consumer):
    # Score 650 is band "very good": step ¥400, ceiling ¥6,000 (consumers.limits).
    outcomes = [_keep(consumer, 800 + i) for i in range(10)]

    assert [o.promoted for o in outcomes] == [False] * 9 + [True]
    assert (outcomes[-1].level_before, outcomes[-1].level_after) == (RewardLevel.NEWCOMER, RewardLevel.EXPERT)
    assert _account(consumer).level == RewardLevel.EXPERT
    change = LevelChange.objects.get()
    assert (change.before, change.after) == ("newcomer", "expert")
    limit_change = LimitChange.objects.get(reason_code=LimitChangeReason.REWARD)
    assert (limit_change.before_amount, limit_change.after_amount) == (Decimal("1000.00"), Decimal("1400.00"))
    assert CreditProfile.objects.get(consumer=consumer).credit_limit_amount == Decimal("1400.00")


@pytest.mark.django_db
def test_the_limit_perk_never_passes_the_band_ceiling():
    consumer = ConsumerFactory(profile__credit_limit_amount=Decimal("5900.00"))  # ceiling ¥6,000 for band very good

    for i in range(10):
        _keep(consumer, 900 + i)

    assert CreditProfile.objects.get(consumer=consumer).credit_limit_amount == Decimal("6000.00")


@pytest.mark.django_db
def test_no_limit_perk_while_the_profile_is_paused(consumer):
    credit_profile_pause(actor=None, consumer=consumer, reason="staff check")

    for i in range(10):
        _keep(consumer, 950 + i)

    assert _account(consumer).level == RewardLevel.EXPERT
    assert not LimitChange.objects.filter(reason_code=LimitChangeReason.REWARD).exists()
    assert CreditProfile.objects.get(consumer=consumer).credit_limit_amount == Decimal("1000.00")


@pytest.mark.django_db
def test_levels_follow_the_policy_thresholds():
    assert [policy.level_for(v) for v in (0, 9, 10, 29, 30, 500)] == [
        "newcomer",
        "newcomer",
        "expert",
        "expert",
        "star",
        "star",
    ]
    assert [policy.value_after_breach(v) for v in (5, 12, 35)] == [0, 0, 10]


@pytest.mark.django_db
def test_the_grace_period_perk_grows_with_the_level(consumer):
    assert rewards.grace_extra_for(consumer.pk) == timedelta(0)
    for i in range(10):
        _keep(consumer, 1000 + i)
    assert rewards.grace_extra_for(consumer.pk) == timedelta(days=1)


@pytest.mark.django_db
def test_one_free_extension_per_quarter_from_expert_level(consumer):
    q4 = datetime(2026, 11, 1, 4, 0, tzinfo=timezone.get_fixed_timezone(0))
    assert not rewards.perk_free_extension_available(consumer, now=q4)
    with pytest.raises(NotAllowed) as refused:
        rewards.perk_free_extension_use(actor=None, consumer=consumer, order_id=1, now=q4)
    assert refused.value.code == "no_free_extension"
    for i in range(10):
        _keep(consumer, 1100 + i)

    assert rewards.perk_free_extension_available(consumer, now=q4)
    use = rewards.perk_free_extension_use(actor=None, consumer=consumer, order_id=42, now=q4)
    assert (use.period, use.slot, use.order_id) == ("2026Q4", 1, 42)
    assert not rewards.perk_free_extension_available(consumer, now=q4 + timedelta(days=20))
    with pytest.raises(NotAllowed):
        rewards.perk_free_extension_use(actor=None, consumer=consumer, order_id=43, now=q4 + timedelta(days=20))
    assert PerkUse.objects.count() == 1
    # Next quarter (Beijing time: 2027-01-01 00:30 is already 2027Q1).
    next_quarter = datetime(2026, 12, 31, 16, 30, tzinfo=timezone.get_fixed_timezone(0))
    assert rewards.perk_free_extension_available(consumer, now=next_quarter)


# --------------------------------------------------------------------------- breaches


@pytest.mark.django_db
def test_a_breach_costs_points_and_a_level(consumer):
    for i in range(12):
        _keep(consumer, 1200 + i)
    before = _account(consumer)
    assert before.level == RewardLevel.EXPERT
    balance = before.points_balance

    outcome = rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1299)

    assert outcome.points == -policy.BREACH_POINTS == -50
    assert outcome.demoted
    account = _account(consumer)
    assert (account.level, account.promise_value, account.streak) == ("newcomer", 0, 0)
    assert account.points_balance == balance - 50
    assert PointsEntry.objects.get(kind=PointsKind.BREACH).points == -50
    assert LevelChange.objects.filter(before="expert", after="newcomer").count() == 1
    assert _balance_is_sum(consumer) == balance - 50


@pytest.mark.django_db
def test_a_breach_never_takes_the_balance_below_zero(consumer):
    _keep(consumer, 1300)

    outcome = rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1301)

    assert outcome.points == -10
    assert _balance_is_sum(consumer) == 0
    # With nothing left, a second breach costs nothing and writes no entry.
    assert rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1302).points == 0
    assert PointsEntry.objects.filter(kind=PointsKind.BREACH).count() == 1


@pytest.mark.django_db
def test_a_breach_replayed_at_a_zero_balance_demotes_only_once(consumer):
    RewardAccount.objects.create(consumer=consumer, promise_value=35, level=policy.level_for(35))

    first = rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1401)
    level_after_first = _account(consumer).level
    replay = rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1401)

    assert first.points == 0 and first.demoted
    assert not replay.demoted
    account = _account(consumer)
    assert (account.promise_value, account.level) == (policy.value_after_breach(35), level_after_first)
    assert LevelChange.objects.filter(account=account).count() == 1
    assert PointsEntry.objects.filter(kind=PointsKind.BREACH).count() == 0


@pytest.mark.django_db
def test_a_breach_expires_old_points_before_taking_its_cost(consumer):
    t0 = _t0()
    _give(consumer, 60, "old", now=t0)
    _give(consumer, 5, "new", now=t0 + timedelta(days=200))
    when = policy.add_months(t0, 12) + timedelta(days=1)

    outcome = rewards.rewards_on_promise_breached(actor=None, consumer_id=consumer.pk, order_id=1402, now=when)

    assert outcome.points == -5  # only the live points are at stake, not the 60 past their date
    assert PointsEntry.objects.get(kind=PointsKind.EXPIRY).points == -60
    assert _balance_is_sum(consumer) == 0


# --------------------------------------------------------------------------- spending and the ledger's rules


@pytest.mark.django_db
def test_spending_more_than_the_balance_is_refused_and_changes_nothing(consumer):
    _give(consumer, 30, "g1")

    with pytest.raises(NotAllowed) as refused:
        rewards.points_spend(actor=None, consumer=consumer, points=31, key="s1", reason="coupon")

    assert refused.value.code == "insufficient_points"
    assert PointsEntry.objects.count() == 1
    assert _balance_is_sum(consumer) == 30
    rewards.points_spend(actor=None, consumer=consumer, points=30, key="s2", reason="coupon")
    assert _balance_is_sum(consumer) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("points", [0, -5, 1.5, True, "10"])
def test_awards_and_spends_must_be_positive_whole_numbers(consumer, points):
    with pytest.raises(ValidationFailed):
        rewards.points_spend(actor=None, consumer=consumer, points=points, key="x", reason="")
    with pytest.raises(ValidationFailed):
        _give(consumer, points, "y")
    assert PointsEntry.objects.count() == 0


@pytest.mark.django_db
def test_points_entries_are_append_only_in_the_database(consumer):
    _give(consumer, 10, "g1")
    entry = PointsEntry.objects.get()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        PointsEntry.objects.filter(pk=entry.pk).update(points=1000)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        PointsEntry.objects.filter(pk=entry.pk).delete()

    assert PointsEntry.objects.get().points == 10


@pytest.mark.django_db
def test_the_database_refuses_a_negative_balance_even_without_the_service(consumer):
    _give(consumer, 10, "g1")

    with pytest.raises(IntegrityError), transaction.atomic():
        RewardAccount.objects.filter(consumer=consumer).update(points_balance=-1)

    assert _account(consumer).points_balance == 10


# --------------------------------------------------------------------------- expiry


@pytest.mark.django_db
def test_expiry_takes_the_oldest_points_first_and_runs_once(consumer):
    t0 = _t0()
    _give(consumer, 10, "jan", now=t0)
    _give(consumer, 10, "feb", now=t0 + timedelta(days=31))
    rewards.points_spend(
        actor=None, consumer=consumer, points=15, key="spend", reason="coupon", now=t0 + timedelta(days=40)
    )

    # January's 10 are due, but the spend already used them (oldest first): nothing left to expire.
    assert rewards.points_expire_due(now=policy.add_months(t0, 12) + timedelta(hours=1)) == 0
    # February's 10 are due: 5 of them were spent, the other 5 expire.
    later = policy.add_months(t0 + timedelta(days=31), 12) + timedelta(hours=1)
    assert rewards.points_expire_due(now=later) == 5
    assert rewards.points_expire_due(now=later) == 0  # a second run finds nothing
    expiry = PointsEntry.objects.get(kind=PointsKind.EXPIRY)
    assert expiry.points == -5
    assert _balance_is_sum(consumer) == 0


@pytest.mark.django_db
def test_expired_points_cannot_be_spent_even_before_the_job_ran(consumer):
    t0 = _t0()
    _give(consumer, 20, "old", now=t0)
    _give(consumer, 5, "new", now=t0 + timedelta(days=200))

    with pytest.raises(NotAllowed):
        rewards.points_spend(
            actor=None,
            consumer=consumer,
            points=10,
            key="s",
            reason="",
            now=policy.add_months(t0, 12) + timedelta(days=1),
        )

    # The refused spend rolled back the expiry it ran first; the balance is unchanged until the job runs.
    assert _balance_is_sum(consumer) == 25
    assert rewards.points_expire_due(now=policy.add_months(t0, 12) + timedelta(days=1)) == 20
    assert _balance_is_sum(consumer) == 5


@pytest.mark.django_db
def test_the_expiry_job_only_touches_accounts_with_newly_expired_points():
    fresh, old = ConsumerFactory(), ConsumerFactory()
    t0 = _t0()
    _give(old, 10, "old", now=t0)
    _give(fresh, 10, "fresh", now=t0 + timedelta(days=300))

    assert rewards.points_expire_due(now=policy.add_months(t0, 12) + timedelta(days=1)) == 10

    assert _balance_is_sum(old) == 0
    assert _balance_is_sum(fresh) == 10
    assert RewardAccount.objects.get(consumer=fresh).expired_through is None


@pytest.mark.django_db
def test_add_months_clamps_to_the_end_of_the_month():
    jan31 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.get_fixed_timezone(0))
    assert policy.add_months(jan31, 1).date().isoformat() == "2026-02-28"
    assert policy.add_months(jan31, 12).date().isoformat() == "2027-01-31"
    assert policy.add_months(jan31, 13).date().isoformat() == "2027-02-28"


# --------------------------------------------------------------------------- concurrency (real connections)


def _race(calls: list) -> list[str]:
    """Run each call on its own thread and connection, released together; each in its own transaction."""
    barrier = threading.Barrier(len(calls))
    results: list[str] = [""] * len(calls)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                calls[index]()
                time.sleep(0.02)  # hold the locks a moment so the others really queue
            results[index] = "ok"
        except NotAllowed:
            results[index] = "refused"
        except Exception as exc:  # surfaced by the assertions
            results[index] = f"error: {exc!r}"
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_spends_never_take_the_balance_below_zero():
    consumer = ConsumerFactory()
    _give(consumer, 100, "seed")

    def spend(i: int):
        return lambda: rewards.points_spend(actor=None, consumer=consumer, points=30, key=f"s{i}", reason="")

    results = _race([spend(i) for i in range(8)])

    assert results.count("ok") == 3
    assert results.count("refused") == 5
    assert _balance_is_sum(consumer) == 10
    assert PointsEntry.objects.filter(kind=PointsKind.SPEND).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_awards_and_spends_balance_exactly():
    consumer = ConsumerFactory()
    _give(consumer, 50, "seed")

    def spend(i: int):
        return lambda: rewards.points_spend(actor=None, consumer=consumer, points=20, key=f"s{i}", reason="")

    def award(i: int):
        return lambda: _give(consumer, 10, f"a{i}")

    def kept(i: int):
        return lambda: _keep(consumer, 5000 + i)

    calls = [spend(i) for i in range(6)] + [award(i) for i in range(4)] + [kept(i) for i in range(4)]
    results = _race(calls)

    assert not [r for r in results if r.startswith("error")], results
    spends = results[:6].count("ok")
    assert results[6:] == ["ok"] * 8
    kept_points = sum(
        PointsEntry.objects.filter(kind__in=[PointsKind.KEPT, PointsKind.STREAK]).values_list("points", flat=True)
    )
    balance = _balance_is_sum(consumer)
    assert balance == 50 + 40 + kept_points - 20 * spends
    assert balance >= 0
    assert PointsEntry.objects.filter(kind=PointsKind.SPEND).count() == spends
    assert _account(consumer).streak == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_awards_create_one_account():
    consumer = ConsumerFactory()

    results = _race([(lambda i=i: _keep(consumer, 6000 + i)) for i in range(5)])

    assert results == ["ok"] * 5
    assert RewardAccount.objects.filter(consumer=consumer).count() == 1
    assert _balance_is_sum(consumer) == 10 + 10 + 15 + 15 + 20


@pytest.mark.django_db
def test_the_bulk_award_matches_one_by_one_awards():
    one_by_one, bulk = ConsumerFactory(), ConsumerFactory()
    for i in range(12):
        _keep(one_by_one, 7000 + i)
    _keep(bulk, 7100)  # an existing account and streak to continue

    promoted = rewards.rewards_on_promises_kept_many(
        actor=None,
        kept=[(bulk.pk, 7100 + i) for i in range(12)],  # 7100 again: a replay, skipped
    )

    assert promoted == [(bulk.pk, RewardLevel.EXPERT)]
    a, b = _account(one_by_one), _account(bulk)
    assert (a.points_balance, a.streak, a.best_streak, a.promise_value, a.level) == (
        b.points_balance,
        b.streak,
        b.best_streak,
        b.promise_value,
        b.level,
    )
    assert _balance_is_sum(bulk) == _balance_is_sum(one_by_one)
    assert sorted(PointsEntry.objects.filter(account=b).values_list("kind", "points")) == sorted(
        PointsEntry.objects.filter(account=a).values_list("kind", "points")
    )
    assert LevelChange.objects.filter(account=b).count() == 1
    limits = {c: CreditProfile.objects.get(consumer=c).credit_limit_amount for c in (one_by_one, bulk)}
    assert limits[one_by_one] == limits[bulk] == Decimal("1400.00")
