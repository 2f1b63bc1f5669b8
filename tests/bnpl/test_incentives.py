"""守约激励 in the order flow (bnpl.incentives): points on kept and breached promises, the grace perk,
merchant campaigns within budget (also under concurrency), and the consumer, merchant and admin pages."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.exceptions import InvalidTransition, ValidationFailed
from bnpl.extensions import credit_order_extend_due_date, extensions_allowed
from bnpl.incentives import (
    campaign_create,
    campaign_end,
    campaign_pause,
    campaign_resume,
    campaigns_for_consumer,
    incentives_on_promise_record,
    rewards_expire_due,
)
from bnpl.ledger import ledger_check, order_account_balance
from bnpl.models import BillLine, Campaign, CampaignProgress, ChargeAttempt, Coupon, CreditOrder, LedgerTransaction
from bnpl.models.incentives import BenefitKind, CampaignStatus, CouponStatus
from bnpl.models.ledger import AccountKind
from bnpl.overdue import classify_overdue, credit_order_mark_overdue
from bnpl.schedules import JOBS
from bnpl.services import credit_order_complete, credit_order_mark_paid_elsewhere
from consumers import rewards
from consumers.choices import PointsKind, PromiseOutcome, RewardLevel
from consumers.models import CreditProfile, PerkUse, PointsEntry, PromiseRecord, RewardAccount
from merchants.choices import MemberRole
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in, run_concurrently
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory, UserFactory

S = OrderStatus
D = Decimal


def _pay(order: CreditOrder) -> CreditOrder:
    return credit_order_mark_paid_elsewhere(actor=None, actor_kind=ActorKind.STAFF, order=order, reason="paid at till")


def _kept(listing, consumer, n: int = 1) -> list[CreditOrder]:
    """``n`` orders of ``consumer`` with ``listing``'s merchant paid on time (promise records fulfilled)."""
    return [_pay(due_order(listing, consumer, status=S.COLLECTING)) for _ in range(n)]


def _points(consumer) -> int:
    cached, total = rewards.points_balance_check(consumer)
    assert cached == total
    return cached


def _make_expert(consumer) -> None:
    for i in range(10):
        rewards.rewards_on_promise_kept(actor=None, consumer_id=consumer.pk, order_id=900_000 + consumer.pk * 100 + i)


def _coupon_campaign(merchant, *, goal=2, amount="5.00", budget="10.00", title="充电满两次送券", **extra) -> Campaign:
    return campaign_create(
        actor=None,
        merchant=merchant,
        title=title,
        goal_count=goal,
        benefit_kind=BenefitKind.COUPON,
        benefit_amount=amount,
        budget_amount=budget,
        **extra,
    )


# --------------------------------------------------------------------------- the hook in the order flow


@pytest.mark.django_db
def test_paying_an_order_on_time_earns_points_in_the_same_transaction(listing, consumer):
    [order] = _kept(listing, consumer)

    entry = PointsEntry.objects.get()
    assert (entry.kind, entry.points, entry.order_id) == (PointsKind.KEPT, 10, order.pk)
    assert PromiseRecord.objects.get(order_id=order.pk).outcome == PromiseOutcome.FULFILLED
    assert _points(consumer) == 10


@pytest.mark.django_db
def test_a_failed_order_change_awards_nothing(listing, consumer):
    order = due_order(listing, consumer, status=S.COLLECTING)

    with pytest.raises(RuntimeError), transaction.atomic():
        _pay(order)
        raise RuntimeError("the caller's transaction fails after the payment")

    assert PointsEntry.objects.count() == 0
    assert not RewardAccount.objects.filter(consumer=consumer, points_balance__gt=0).exists()


@pytest.mark.django_db
def test_the_bulk_charge_run_awards_points_for_each_paid_order(listing, consumer):
    fund(consumer, "100.00")
    orders = [due_order(listing, consumer, amount="5.00") for _ in range(3)]

    run_charges(threads=1)

    assert set(PointsEntry.objects.filter(kind=PointsKind.KEPT).values_list("order_id", flat=True)) == {
        o.pk for o in orders
    }
    assert _points(consumer) == 10 + 10 + 15  # the third in a row earns the streak bonus
    assert RewardAccount.objects.get(consumer=consumer).streak == 3


@pytest.mark.django_db
def test_an_overdue_order_costs_points_and_a_level_and_pauses_new_orders_until_paid(listing, consumer):
    _make_expert(consumer)
    before = _points(consumer)
    order = due_order(listing, consumer, status=S.COLLECTING, due_at=timezone.now() - timedelta(days=10))

    credit_order_mark_overdue(order=order)

    account = RewardAccount.objects.get(consumer=consumer)
    assert (account.level, account.streak) == (RewardLevel.NEWCOMER, 0)
    assert PointsEntry.objects.get(kind=PointsKind.BREACH, order_id=order.pk).points == -50
    assert _points(consumer) == before - 50
    assert CreditProfile.objects.get(consumer=consumer).is_paused  # the overdue service's pause, reused

    _pay(CreditOrder.objects.get(pk=order.pk))  # paid late: recovered

    assert PromiseRecord.objects.get(order_id=order.pk).outcome == PromiseOutcome.RECOVERED
    assert not CreditProfile.objects.get(consumer=consumer).is_paused
    assert _points(consumer) == before - 50  # a late payment earns nothing back
    assert not PointsEntry.objects.filter(kind=PointsKind.KEPT, order_id=order.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("outcome", "amount"), [(PromiseOutcome.CANCELLED, "5.00"), (PromiseOutcome.FULFILLED, "0.00")]
)
def test_cancelled_and_zero_amount_records_move_nothing(consumer, merchant, outcome, amount):
    _coupon_campaign(merchant, goal=1)
    record = PromiseRecord.objects.create(
        consumer=consumer,
        merchant=merchant,
        order_id=4242,
        outcome=outcome,
        amount=D(amount),
        recorded_at=timezone.now(),
    )

    incentives_on_promise_record(actor=None, record=record)

    assert PointsEntry.objects.count() == 0
    assert CampaignProgress.objects.count() == 0


# --------------------------------------------------------------------------- the grace period perk


@pytest.mark.django_db
def test_the_overdue_job_gives_an_expert_one_more_day_of_grace(listing):
    newcomer, expert = ConsumerFactory(), ConsumerFactory()
    _make_expert(expert)
    grace = django_settings.BNPL_GRACE_PERIOD
    now = timezone.now()
    late = now - grace - timedelta(hours=12)
    newcomer_order = due_order(listing, newcomer, status=S.COLLECTING, due_at=late)
    expert_order = due_order(listing, expert, status=S.COLLECTING, due_at=late)
    expert_later = due_order(listing, expert, status=S.COLLECTING, due_at=now - grace - timedelta(hours=25))

    report = classify_overdue(now=now)

    assert report.marked_overdue == 2
    assert report.skipped == 0
    statuses = dict(CreditOrder.objects.values_list("pk", "status"))
    assert statuses[newcomer_order.pk] == S.OVERDUE
    assert statuses[expert_order.pk] == S.COLLECTING  # within the expert's extra day
    assert statuses[expert_later.pk] == S.OVERDUE


@pytest.mark.django_db
def test_marking_an_expert_order_overdue_inside_its_longer_grace_is_refused(listing, consumer):
    _make_expert(consumer)
    order = due_order(
        listing,
        consumer,
        status=S.COLLECTING,
        due_at=timezone.now() - django_settings.BNPL_GRACE_PERIOD - timedelta(hours=1),
    )

    with pytest.raises(Exception) as refused:
        credit_order_mark_overdue(order=order)

    assert getattr(refused.value, "code", "") == "within_grace"
    assert CreditOrder.objects.get(pk=order.pk).status == S.COLLECTING


# --------------------------------------------------------------------------- the free extension perk


@pytest.mark.django_db
def test_an_expert_may_extend_one_order_a_second_time_per_quarter(consumer):
    listing = ListingFactory(scenario="live_shopping")
    order = due_order(listing, consumer, status=S.COMPLETED, due_at=timezone.now() + timedelta(days=3))
    credit_order_extend_due_date(actor=None, order=order)
    order.refresh_from_db()
    assert extensions_allowed(order) == 1  # a newcomer: one extension per order

    _make_expert(consumer)
    order.refresh_from_db()
    assert extensions_allowed(order) == 2
    credit_order_extend_due_date(actor=None, order=order)

    use = PerkUse.objects.get()
    assert use.order_id == order.pk
    other = due_order(listing, consumer, status=S.COMPLETED, due_at=timezone.now() + timedelta(days=3))
    credit_order_extend_due_date(actor=None, order=other)
    other.refresh_from_db()
    assert extensions_allowed(other) == 1  # this quarter's free one is used


@pytest.mark.django_db(transaction=True)
def test_two_orders_extended_at_once_use_the_free_extension_once():
    listing = ListingFactory(scenario="live_shopping")
    consumer = ConsumerFactory()
    _make_expert(consumer)
    orders = [due_order(listing, consumer, status=S.COMPLETED, due_at=timezone.now() + timedelta(days=3)) for _ in "ab"]
    for order in orders:
        credit_order_extend_due_date(actor=None, order=order)  # the one every order has

    results = run_concurrently(*(lambda o=o: credit_order_extend_due_date(actor=None, order=o) for o in orders))

    assert sorted(type(r).__name__ for r in results) == ["CreditOrder", "NotAllowed"]
    assert PerkUse.objects.count() == 1


# --------------------------------------------------------------------------- campaigns


@pytest.mark.django_db
def test_a_campaign_awards_a_coupon_at_the_goal_and_never_beyond_its_budget(listing):
    campaign = _coupon_campaign(listing.merchant, goal=2, amount="5.00", budget="10.00")
    first, second, third = ConsumerFactory(), ConsumerFactory(), ConsumerFactory()

    _kept(listing, first, 1)
    progress = CampaignProgress.objects.get(campaign=campaign, consumer=first)
    assert (progress.kept_count, progress.awarded_at) == (1, None)
    for consumer in (first, second, third):
        _kept(listing, consumer, 1 if consumer is first else 2)

    campaign.refresh_from_db()
    assert (campaign.spent_amount, campaign.awards_count, campaign.status) == (D("10.00"), 2, CampaignStatus.EXHAUSTED)
    assert list(Coupon.objects.order_by("consumer_id").values_list("consumer_id", "amount")) == [
        (first.pk, D("5.00")),
        (second.pk, D("5.00")),
    ]
    # Exhausted by the second award: the third consumer's kept promises no longer count.
    assert not CampaignProgress.objects.filter(campaign=campaign, consumer=third).exists()
    assert _points(third) == 20  # the platform's points still apply
    _kept(listing, first, 1)  # one award per consumer
    assert Coupon.objects.filter(consumer=first).count() == 1


@pytest.mark.django_db
def test_a_points_campaign_pays_points_at_their_programme_value(listing, consumer):
    campaign = campaign_create(
        actor=None,
        merchant=listing.merchant,
        title="守约三次送积分",
        goal_count=3,
        benefit_kind=BenefitKind.POINTS,
        benefit_points=200,
        budget_amount="100.00",
    )
    assert campaign.cost_amount == D("2.00")

    _kept(listing, consumer, 3)

    entry = PointsEntry.objects.get(kind=PointsKind.CAMPAIGN)
    assert (entry.points, entry.key) == (200, f"campaign:{campaign.pk}:{consumer.pk}")
    assert _points(consumer) == 10 + 10 + 15 + 200
    campaign.refresh_from_db()
    assert (campaign.spent_amount, campaign.status) == (D("2.00"), CampaignStatus.ACTIVE)


@pytest.mark.django_db
def test_campaigns_count_only_kept_promises_with_their_merchant_while_active(listing, consumer):
    campaign = _coupon_campaign(listing.merchant, goal=2)
    elsewhere = ListingFactory()

    _kept(elsewhere, consumer, 2)
    assert not CampaignProgress.objects.exists()
    campaign_pause(actor=None, campaign=campaign)
    _kept(listing, consumer, 1)
    assert not CampaignProgress.objects.exists()
    campaign_resume(actor=None, campaign=campaign)
    _kept(listing, consumer, 1)
    assert CampaignProgress.objects.get().kept_count == 1


@pytest.mark.django_db
def test_a_members_only_campaign_ignores_lower_levels(listing):
    campaign = _coupon_campaign(listing.merchant, goal=1, min_level=RewardLevel.EXPERT)
    newcomer, expert = ConsumerFactory(), ConsumerFactory()
    _make_expert(expert)

    _kept(listing, newcomer, 1)
    _kept(listing, expert, 1)

    assert list(Coupon.objects.values_list("consumer_id", flat=True)) == [expert.pk]
    assert campaigns_for_consumer(consumer=newcomer)["open"] == []
    assert [p.campaign_id for p in campaigns_for_consumer(consumer=expert)["progress"]] == [campaign.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"budget_amount": "4.99"}, "budget_amount"),
        ({"goal_count": 0}, "goal_count"),
        ({"amount": "0"}, "benefit_amount"),
        ({"amount": "1.005"}, "benefit_amount"),
        ({"min_level": "gold"}, "min_level"),
    ],
)
def test_a_campaign_with_bad_terms_is_refused(merchant, changes, field):
    values = {"goal": 2, "amount": "5.00", "budget": "10.00"}
    extra = {}
    for key, value in changes.items():
        if key == "budget_amount":
            values["budget"] = value
        elif key == "goal_count":
            values["goal"] = value
        elif key == "amount":
            values["amount"] = value
        else:
            extra[key] = value

    with pytest.raises(ValidationFailed) as refused:
        _coupon_campaign(merchant, **values, **extra)

    assert field in refused.value.fields
    assert Campaign.objects.count() == 0


@pytest.mark.django_db
def test_the_daily_rewards_job_expires_points_and_coupons_once(listing, consumer):
    _coupon_campaign(listing.merchant, goal=1)
    _kept(listing, consumer, 1)
    coupon = Coupon.objects.get()
    a_year_on = timezone.now() + timedelta(days=400)

    assert rewards_expire_due(now=a_year_on) == {"points": 10, "coupons": 1}
    assert rewards_expire_due(now=a_year_on) == {"points": 0, "coupons": 0}

    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.EXPIRED
    assert _points(consumer) == 0
    assert "bnpl.incentives.rewards_expire_due" in {job.func for job in JOBS}


@pytest.mark.django_db
def test_an_ended_campaign_cannot_be_resumed(merchant):
    campaign = _coupon_campaign(merchant)
    campaign_end(actor=None, campaign=campaign)

    with pytest.raises(InvalidTransition):
        campaign_resume(actor=None, campaign=campaign)

    assert Campaign.objects.get().status == CampaignStatus.ENDED


@pytest.mark.django_db(transaction=True)
def test_consumers_reaching_the_goal_at_once_never_overspend_the_budget():
    listing = ListingFactory()
    campaign = _coupon_campaign(listing.merchant, goal=1, amount="5.00", budget="15.00")
    consumers = [ConsumerFactory() for _ in range(6)]
    orders = [due_order(listing, c, status=S.COLLECTING) for c in consumers]
    barrier = threading.Barrier(len(orders))
    errors: list[Exception] = []

    def pay(order: CreditOrder) -> None:
        try:
            barrier.wait(timeout=10)
            _pay(order)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=(o,)) for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    campaign.refresh_from_db()
    assert (campaign.spent_amount, campaign.awards_count) == (D("15.00"), 3)
    assert campaign.status == CampaignStatus.EXHAUSTED
    assert Coupon.objects.count() == 3
    assert CampaignProgress.objects.filter(awarded_at__isnull=False).count() == 3
    assert PointsEntry.objects.filter(kind=PointsKind.KEPT).count() == 6


# --------------------------------------------------------------------------- pages


@pytest.mark.django_db
def test_the_rewards_page_shows_level_points_progress_and_campaigns(listing, consumer):
    _coupon_campaign(listing.merchant, goal=3)
    _kept(listing, consumer, 2)
    client = Client()
    client.force_login(consumer.user)

    page = client.get(reverse("me:rewards"))

    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-testid="points">20<' in text
    assert "Promise Newcomer" in text
    assert "Keep 8 more promises to become Promise Expert." in text
    assert "2 of 3 kept" in text


@pytest.mark.django_db
def test_the_rewards_page_runs_the_same_queries_for_2_or_20_history_rows(listing, django_assert_max_num_queries):
    few, many = ConsumerFactory(), ConsumerFactory()
    for i in range(2):
        rewards.rewards_on_promise_kept(actor=None, consumer_id=few.pk, order_id=10_000 + i)
    for i in range(20):
        rewards.rewards_on_promise_kept(actor=None, consumer_id=many.pk, order_id=20_000 + i)
    _coupon_campaign(listing.merchant, goal=3)
    counts = []
    for consumer in (few, many):
        client = Client()
        client.force_login(consumer.user)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(reverse("me:rewards")).status_code == 200
        counts.append(len(queries))

    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_a_merchant_owner_creates_pauses_and_sees_the_cost_of_campaigns(listing):
    owner = MerchantMemberFactory(merchant=listing.merchant, role=MemberRole.OWNER)
    client = Client()
    client.force_login(owner.user)

    response = client.post(
        reverse("merchant:campaign_create"),
        {
            "title": "满三次送5元券",
            "goal_count": "1",
            "benefit_kind": "coupon",
            "benefit_amount": "5.00",
            "budget_amount": "50.00",
            "min_level": "newcomer",
        },
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.merchant_id, campaign.goal_count, campaign.budget_amount) == (listing.merchant_id, 1, D("50.00"))
    _kept(listing, ConsumerFactory(), 1)
    page = client.get(reverse("merchant:campaigns")).content.decode()
    assert 'data-testid="total-spent">¥5.00<' in page
    assert client.post(reverse("merchant:campaign_action", args=[campaign.pk, "pause"])).status_code == 302
    assert Campaign.objects.get().status == CampaignStatus.PAUSED


@pytest.mark.django_db
def test_a_campaign_form_with_a_budget_below_one_award_is_shown_again_with_the_reason(merchant):
    owner = MerchantMemberFactory(merchant=merchant, role=MemberRole.FINANCE)
    client = Client()
    client.force_login(owner.user)

    response = client.post(
        reverse("merchant:campaign_create"),
        {
            "title": "送券",
            "goal_count": "2",
            "benefit_kind": "coupon",
            "benefit_amount": "8.00",
            "budget_amount": "5.00",
        },
    )

    assert response.status_code == 400
    assert "The budget must cover at least one award (8.00)." in response.content.decode()
    assert 'value="送券"' in response.content.decode()
    assert Campaign.objects.count() == 0


@pytest.mark.django_db
def test_the_campaign_list_runs_the_same_queries_for_2_or_20_campaigns():
    counts = []
    for n in (2, 20):
        member = MerchantMemberFactory(role=MemberRole.OWNER)
        for _ in range(n):
            _coupon_campaign(member.merchant)
        client = Client()
        client.force_login(member.user)
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse("merchant:campaigns"))
        assert page.status_code == 200
        assert page.content.decode().count("充电满两次送券") == n
        counts.append(len(queries))

    assert counts[0] == counts[1]


@pytest.mark.django_db
def test_campaigns_of_another_merchant_are_a_404_and_viewers_cannot_change_them(listing):
    campaign = _coupon_campaign(listing.merchant)
    stranger = MerchantMemberFactory(role=MemberRole.OWNER)
    viewer = MerchantMemberFactory(merchant=listing.merchant, role=MemberRole.VIEWER)
    client = Client()

    client.force_login(stranger.user)
    assert client.post(reverse("merchant:campaign_action", args=[campaign.pk, "pause"])).status_code == 404
    client.force_login(viewer.user)
    assert client.get(reverse("merchant:campaigns")).status_code == 200
    assert client.post(reverse("merchant:campaign_action", args=[campaign.pk, "pause"])).status_code == 403
    assert client.post(reverse("merchant:campaign_create"), {"title": "x"}).status_code == 403
    # The list is read-only: a POST to it is refused whatever the role.
    assert client.post(reverse("merchant:campaigns"), {"title": "x"}).status_code == 405

    assert Campaign.objects.get().status == CampaignStatus.ACTIVE
    assert Campaign.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_shows_the_programme_totals(listing, consumer):
    _coupon_campaign(listing.merchant, goal=1)
    _kept(listing, consumer, 1)
    rewards.points_spend(actor=None, consumer=consumer, points=4, key="spend", reason="test")
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)

    page = client.get(reverse("admin:bnpl_rewards_programme"))

    assert page.status_code == 200
    text = page.content.decode()
    assert '<th scope="row">Issued</th><td>10</td>' in text
    assert '<th scope="row">Spent</th><td>4</td>' in text
    assert '<th scope="row">Cost so far</th><td>¥5.00</td>' in text
    assert '<th scope="row">Promise Newcomer</th><td>1</td>' in text


# --------------------------------------------------------------------------- failures, the sweep, chunks


@pytest.mark.django_db
def test_a_failing_rewards_hook_keeps_the_payment_and_the_sweep_applies_it_once(listing, consumer, monkeypatch):
    from bnpl.incentives import rewards_apply_pending

    real = rewards.rewards_on_promise_kept

    def broken(**kwargs):
        raise RuntimeError("rewards are down")

    monkeypatch.setattr(rewards, "rewards_on_promise_kept", broken)
    [order] = _kept(listing, consumer)

    order.refresh_from_db()
    assert order.status == S.PAID  # the payment is recorded whatever the rewards did
    record = PromiseRecord.objects.get(order_id=order.pk)
    assert record.rewards_pending
    assert PointsEntry.objects.count() == 0

    monkeypatch.setattr(rewards, "rewards_on_promise_kept", real)
    assert rewards_apply_pending() == {"applied": 1, "failed": 0}
    assert rewards_apply_pending() == {"applied": 0, "failed": 0}

    record.refresh_from_db()
    assert not record.rewards_pending
    assert list(PointsEntry.objects.values_list("kind", "order_id")) == [(PointsKind.KEPT, order.pk)]
    assert _points(consumer) == 10


@pytest.mark.django_db
def test_a_failing_rewards_hook_does_not_undo_the_bulk_charge_run(listing, consumer, monkeypatch):
    from bnpl.incentives import rewards_apply_pending

    campaign = _coupon_campaign(listing.merchant, goal=2, amount="5.00", budget="10.00")
    fund(consumer, "100.00")
    orders = [due_order(listing, consumer, amount="5.00") for _ in range(2)]
    real = rewards.rewards_on_promises_kept_many

    def broken(**kwargs):
        raise RuntimeError("rewards are down")

    monkeypatch.setattr(rewards, "rewards_on_promises_kept_many", broken)
    run_charges(threads=1)

    assert set(CreditOrder.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)) == {S.PAID}
    assert PromiseRecord.objects.filter(rewards_pending=True).count() == 2
    assert PointsEntry.objects.count() == 0 and Coupon.objects.count() == 0

    monkeypatch.setattr(rewards, "rewards_on_promises_kept_many", real)
    assert rewards_apply_pending()["applied"] == 2
    rewards_apply_pending()
    assert PointsEntry.objects.filter(kind=PointsKind.KEPT).count() == 2
    assert Coupon.objects.filter(consumer=consumer, campaign=campaign).count() == 1  # the campaign goal, once
    assert not PromiseRecord.objects.filter(rewards_pending=True).exists()


def test_the_rewards_sweep_is_scheduled():
    job = {j.name: j for j in JOBS}["apply-pending-rewards"]
    assert job.func == "bnpl.incentives.rewards_apply_pending_task"


def _fulfilled(merchant, consumers, start: int) -> list[PromiseRecord]:
    return [
        PromiseRecord.objects.create(
            consumer=c,
            merchant=merchant,
            order_id=start + i,
            outcome=PromiseOutcome.FULFILLED,
            amount=D("10.00"),
            recorded_at=timezone.now(),
        )
        for i, c in enumerate(consumers)
    ]


@pytest.mark.django_db
def test_campaign_progress_of_a_chunk_takes_the_same_queries_for_2_or_20_records(merchant):
    from bnpl.incentives import _campaigns_progress

    for goal in (5, 6, 7):
        _coupon_campaign(merchant, goal=goal, amount="1.00", budget="100.00")

    def queries(n: int, start: int) -> int:
        records = _fulfilled(merchant, [ConsumerFactory() for _ in range(n)], start)
        with CaptureQueriesContext(connection) as ctx:
            _campaigns_progress(records=records, now=timezone.now())
        return len(ctx.captured_queries)

    assert queries(2, 700_000) == queries(20, 800_000)
    assert CampaignProgress.objects.filter(kept_count=1).count() == 3 * 22


@pytest.mark.django_db
def test_a_chunk_locks_campaigns_before_progress_and_pays_within_budget(merchant):
    from bnpl.incentives import _campaigns_progress

    campaign = _coupon_campaign(merchant, goal=1, amount="5.00", budget="10.00")
    records = _fulfilled(merchant, [ConsumerFactory() for _ in range(3)], 710_000)

    with CaptureQueriesContext(connection) as ctx:
        _campaigns_progress(records=records, now=timezone.now())

    locks = [q["sql"] for q in ctx.captured_queries if "FOR UPDATE" in q["sql"]]
    assert "bnpl_campaign" in locks[0] and all('bnpl_campaign"' not in sql for sql in locks[1:])
    campaign.refresh_from_db()
    assert (campaign.spent_amount, campaign.awards_count, campaign.status) == (D("10.00"), 2, CampaignStatus.EXHAUSTED)
    assert CampaignProgress.objects.filter(awarded_at__isnull=False).count() == 2
    assert CampaignProgress.objects.filter(missed_budget=True).count() == 1


@pytest.mark.django_db
def test_a_campaign_paused_during_the_award_is_not_a_missed_budget(merchant, consumer, monkeypatch):
    import bnpl.incentives as incentives

    campaign = _coupon_campaign(merchant, goal=1, amount="5.00", budget="10.00")
    read = incentives._active_campaigns

    def read_then_pause(**kwargs):
        found = read(**kwargs)
        Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.PAUSED)  # the merchant pauses now
        return found

    monkeypatch.setattr(incentives, "_active_campaigns", read_then_pause)
    incentives._campaigns_progress(records=_fulfilled(merchant, [consumer], 720_000), now=timezone.now())

    assert not CampaignProgress.objects.filter(missed_budget=True).exists()
    assert Coupon.objects.count() == 0
    campaign.refresh_from_db()
    assert (campaign.status, campaign.spent_amount) == (CampaignStatus.PAUSED, D("0.00"))
    # The award itself tells a pause from an empty budget.
    stale = Campaign.objects.get(pk=campaign.pk)
    stale.status = CampaignStatus.ACTIVE
    assert incentives._campaign_award(campaign=stale, consumer_id=consumer.pk, now=timezone.now()) == "inactive"


@pytest.mark.django_db
def test_the_level_up_notification_is_sent_once_per_promotion(consumer, monkeypatch):
    import bnpl.incentives as incentives
    from bnpl.notifications import kinds
    from bnpl.notifications import services as notification_services

    sent: list[str] = []
    monkeypatch.setitem(kinds.KINDS, "rewards_level_up", object())
    monkeypatch.setattr(notification_services, "notify", lambda **kw: sent.append(kw["dedupe_key"]))
    _make_expert(consumer)

    incentives._notify_level_up(consumer.pk, RewardLevel.EXPERT)
    incentives._notify_level_up(consumer.pk, RewardLevel.EXPERT)

    change = RewardAccount.objects.get(consumer=consumer).level_changes.get(after=RewardLevel.EXPERT)
    assert sent == [f"rewards_level_up:{consumer.pk}:{RewardLevel.EXPERT}:{change.pk}"] * 2  # one stable key


@pytest.mark.django_db
def test_a_promotion_puts_the_level_up_notice_in_the_inbox_once(consumer):
    import bnpl.incentives as incentives
    from bnpl.notifications.models import Notification

    _make_expert(consumer)
    incentives._notify_level_up(consumer.pk, RewardLevel.EXPERT)
    incentives._notify_level_up(consumer.pk, RewardLevel.EXPERT)

    notice = Notification.objects.get(kind="rewards_level_up")
    assert notice.user_id == consumer.user_id
    assert "/me/rewards/" in notice.body


# --------------------------------------------------------------------------- coupon redemption


LINE = {"name": "充电 4 小时", "quantity": "4", "unit": "小时", "unit_price": "3.00", "amount": "12.00"}


def _coupon(campaign: Campaign, consumer, *, amount="5.00", expires_in=timedelta(days=30), **extra) -> Coupon:
    """A coupon as ``_campaign_award`` issues it (arranged directly to pick the amount and date)."""
    now = timezone.now()
    return Coupon.objects.create(
        consumer=consumer,
        merchant=campaign.merchant,
        campaign=campaign,
        amount=D(amount),
        expires_at=now + expires_in,
        created_at=now - timedelta(days=1),
        **extra,
    )


def _complete(order: CreditOrder, line=LINE) -> CreditOrder:
    return credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order, lines=[line])


def _discounts(order: CreditOrder) -> list[tuple[str, Decimal]]:
    return list(BillLine.objects.filter(order=order, is_discount=True).values_list("name", "amount"))


@pytest.mark.django_db
def test_a_coupon_comes_off_the_next_bill_once_and_the_ledger_posts_the_lower_amount(listing, consumer):
    campaign = _coupon_campaign(listing.merchant, title="充电满3次送¥5券")
    coupon = _coupon(campaign, consumer)
    first = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    second = order_in(S.ACTIVE, listing=listing, consumer=consumer)

    _complete(first)
    _complete(second)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.amount_due, first.hold_amount, first.status) == (D("7.00"), D("7.00"), S.COMPLETED)
    assert _discounts(first) == [("Campaign coupon: 充电满3次送¥5券", D("5.00"))]
    coupon.refresh_from_db()
    assert (coupon.status, coupon.used_order_id, coupon.used_amount) == (CouponStatus.USED, first.pk, D("5.00"))
    assert coupon.used_at is not None
    assert second.amount_due == D("12.00") and _discounts(second) == []
    assert order_account_balance(first, AccountKind.CONSUMER_RECEIVABLE) == D("7.00")
    assert order_account_balance(first, AccountKind.MERCHANT_PAYABLE) == D("-7.00")
    assert ledger_check() == []
    event = first.events.get(to_status=S.COMPLETED)
    assert event.data["coupon"] == coupon.pk


@pytest.mark.django_db
def test_a_coupon_larger_than_the_bill_takes_it_to_zero_and_the_order_is_paid_without_a_charge(listing, consumer):
    coupon = _coupon(_coupon_campaign(listing.merchant, amount="5.00"), consumer)
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    small = {"name": "充电 1 小时", "quantity": "1", "unit": "小时", "unit_price": "3.00", "amount": "3.00"}

    _complete(order, small)

    order.refresh_from_db()
    assert (order.amount_due, order.hold_amount, order.status) == (D("0.00"), D("0.00"), S.PAID)
    assert [amount for _, amount in _discounts(order)] == [D("3.00")]
    coupon.refresh_from_db()
    assert (coupon.status, coupon.used_amount) == (CouponStatus.USED, D("3.00"))
    assert not LedgerTransaction.objects.filter(idempotency_key=f"completion:{order.pk}").exists()
    assert not ChargeAttempt.objects.filter(order=order).exists()
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("0.00")
    assert ledger_check() == []


@pytest.mark.django_db
def test_expired_used_other_merchants_and_other_consumers_coupons_are_ignored(listing, consumer):
    campaign = _coupon_campaign(listing.merchant)
    other_campaign = _coupon_campaign(ListingFactory().merchant)
    _coupon(campaign, consumer, expires_in=timedelta(minutes=-1))  # past its date, job not run yet
    used_on = order_in(S.PAID, listing=listing, consumer=consumer)
    _coupon(
        _coupon_campaign(listing.merchant, title="旧券"),
        consumer,
        status=CouponStatus.USED,
        used_order=used_on,
        used_at=timezone.now(),
        used_amount=D("5.00"),
    )
    _coupon(other_campaign, consumer)
    _coupon(_coupon_campaign(listing.merchant, title="别人的券"), ConsumerFactory())
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)

    _complete(order)

    order.refresh_from_db()
    assert order.amount_due == D("12.00") and _discounts(order) == []
    assert Coupon.objects.filter(status=CouponStatus.ISSUED).count() == 3


@pytest.mark.django_db
def test_the_coupon_expiring_first_is_used_and_a_free_bill_uses_none(listing, consumer):
    later = _coupon(_coupon_campaign(listing.merchant, title="后到期"), consumer, expires_in=timedelta(days=20))
    sooner = _coupon(_coupon_campaign(listing.merchant, title="先到期"), consumer, expires_in=timedelta(days=2))
    free = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)

    credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=free, lines=[])
    _complete(order)

    sooner.refresh_from_db()
    later.refresh_from_db()
    assert (sooner.status, sooner.used_order_id) == (CouponStatus.USED, order.pk)
    assert later.status == CouponStatus.ISSUED
    assert _discounts(free) == []


@pytest.mark.django_db(transaction=True)
def test_two_completions_at_once_use_one_coupon_once():
    listing = ListingFactory()
    consumer = ConsumerFactory()
    coupon = _coupon(_coupon_campaign(listing.merchant), consumer)
    orders = [order_in(S.ACTIVE, listing=listing, consumer=consumer) for _ in range(2)]

    results = run_concurrently(*(lambda o=o: _complete(o) for o in orders))

    assert not [r for r in results if isinstance(r, Exception)]
    dues = sorted(CreditOrder.objects.filter(pk__in=[o.pk for o in orders]).values_list("amount_due", flat=True))
    assert dues == [D("7.00"), D("12.00")]
    assert BillLine.objects.filter(order__in=orders, is_discount=True).count() == 1
    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.USED and coupon.used_order_id in {o.pk for o in orders}
    assert ledger_check() == []


@pytest.mark.django_db
def test_the_order_pages_show_the_coupon_taken_off(listing, consumer):
    _coupon(_coupon_campaign(listing.merchant, title="充电满3次送¥5券"), consumer)
    order = _complete(order_in(S.ACTIVE, listing=listing, consumer=consumer))
    client = Client()
    client.force_login(consumer.user)
    owner = MerchantMemberFactory(merchant=listing.merchant, role=MemberRole.OWNER)
    merchant_client = Client()
    merchant_client.force_login(owner.user)

    mine = client.get(reverse("me:order", args=[order.pk])).content.decode()
    theirs = merchant_client.get(reverse("merchant:order_detail", args=[order.pk])).content.decode()

    for text in (mine, theirs):
        assert "Campaign coupon: 充电满3次送¥5券" in text
        assert "data-coupon=" in text
