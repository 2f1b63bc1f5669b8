"""admission_assess: every policy rule alone, bad input, snapshots, scoring unavailable, and the admin audit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from html import escape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.exceptions import NotAllowed, ValidationFailed
from consumers.models import Consumer, CreditProfile
from merchants.choices import ListingStatus, MerchantStatus, Scenario
from merchants.models import Listing
from scoring.choices import BlocklistKind, DecisionChannel, DecisionOutcome, ReasonCode
from scoring.models import AdmissionDecision, BlocklistEntry, ConsumerFeatures, Scorecard, ScorecardEvent
from scoring.reasons import POLICY_REASON_TEXTS
from scoring.selectors import admission_decision_explain
from scoring.services import POLICY_VERSION, admission_assess
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory


def _profile_state(consumer) -> tuple:
    profile = CreditProfile.objects.get(consumer=consumer)
    return (
        profile.score,
        profile.credit_limit_amount,
        profile.open_exposure_amount,
        profile.spend_cap_amount,
        profile.is_paused,
    )


def _features_state(consumer) -> tuple | None:
    row = ConsumerFeatures.objects.filter(pk=consumer.pk).values_list(
        "open_orders", "orders_total", "recent_order_times", "fulfilled_count"
    )
    return row.first()


def _reason(code: ReasonCode) -> dict[str, str]:
    text = POLICY_REASON_TEXTS[code]
    return {
        "code": code.value,
        "message": str(code.label),
        "message_zh": text.message_zh,
        "hint": str(text.hint),
        "hint_zh": text.hint_zh,
    }


NEW_CONSUMER_FEATURES = {
    "kept_promises": 0,
    "on_time_rate": None,
    "breaches": 0,
    "worst_dpd": 0,
    "days_since_last_breach": None,
    "utilisation": 0.0,
    "orders_in_arrears": 0,
    "recent_charge_failures": 0,
    "days_since_first_order": None,
    "days_since_last_order": None,
    "orders_total": 0,
    "scenarios_used": 0,
    "cancel_rate": None,
    "disputes": 0,
    "real_name_verified": 0,
    "phone_verified": 1,
    "account_age_days": 0,
    "kept_merchants": 0,
}


@pytest.mark.django_db
def test_approved_decision_is_stored_with_score_versions_and_a_full_snapshot(consumer, listing):
    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="order")

    stored = AdmissionDecision.objects.get()
    assert stored.pk == decision.pk
    assert decision.approved
    assert (stored.consumer, stored.listing, stored.amount) == (consumer, listing, Decimal("20.00"))
    assert (stored.channel, stored.outcome) == (DecisionChannel.ORDER, DecisionOutcome.APPROVED)
    assert stored.reasons == []
    assert (stored.policy_version, POLICY_VERSION) == ("admission-2", "admission-2")
    assert stored.scorecard == Scorecard.objects.get(version="default-1", is_active=True)
    assert stored.scorecard_version == "default-1"
    assert stored.score == 650
    assert stored.sub_scores == {"history": 20, "ability": 30, "behaviour": -5, "identity": -35, "connections": -10}
    assert [r["code"] for r in stored.score_reasons] == [
        "few_kept_promises",
        "identity_not_verified",
        "few_merchants",
        "no_orders_yet",
    ]
    assert stored.score_reasons[0] == {
        "code": "few_kept_promises",
        "message": "You have kept only a few pay-later promises so far.",
        "message_zh": "已守约的先享订单还不多。",
        "hint": "Each order you pay on time adds to your record.",
        "hint_zh": "每按时付清一笔订单，都会为你的信用记录加分。",
        "variable": "kept_promises",
        "points_lost": 60,
    }
    assert Decimal("0") < stored.latency_ms < Decimal("1000")
    assert stored.snapshot == {
        "score": 650,
        "score_threshold": 550,
        "listing_min_score": 550,
        "scenario_floor": 500,
        "scorecard_score": 580,
        "credit_limit_amount": "1000.00",
        "spend_cap_amount": None,
        "open_exposure_amount": "0.00",
        "available_amount": "1000.00",
        "is_paused": False,
        "blocklisted": False,
        "merchant_status": "approved",
        "listing_status": "active",
        "scenario": "ebike_charging",
        "open_orders": 0,
        "open_orders_at_merchant": 0,
        "orders_last_hour": 0,
        "orders_last_day": 0,
        "limit_policy_version": "limits-1",
        "features": NEW_CONSUMER_FEATURES,
    }
    # An assessment decides; it holds nothing and counts nothing (the order service does that).
    assert _profile_state(consumer) == (650, Decimal("1000.00"), Decimal("0.00"), None, False)
    assert _features_state(consumer) is None


@pytest.mark.django_db
def test_snapshot_features_come_from_the_feature_row_as_of_the_decision(consumer, listing):
    now = timezone.now()
    ConsumerFeatures.objects.create(
        consumer=consumer,
        fulfilled_count=8,
        breached_count=2,
        recovered_count=1,
        cancelled_count=2,
        worst_dpd=12,
        last_breach_at=now - timedelta(days=100),
        orders_total=13,
        first_order_at=now - timedelta(days=200),
        last_order_at=now - timedelta(days=3),
        open_orders=1,
        open_by_merchant={str(listing.merchant_id): 1},
        scenario_counts={"ebike_charging": 10, "express_delivery": 3},
        kept_merchant_ids=[1, 2, 3],
    )
    CreditProfile.objects.filter(consumer=consumer).update(open_exposure_amount=Decimal("250.00"))

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="api")

    assert decision.snapshot["features"] == {
        **NEW_CONSUMER_FEATURES,
        "kept_promises": 8,
        "on_time_rate": 0.8,
        "breaches": 2,
        "worst_dpd": 12,
        "days_since_last_breach": 100,
        "utilisation": 0.25,
        "orders_in_arrears": 1,
        "days_since_first_order": 200,
        "days_since_last_order": 3,
        "orders_total": 13,
        "scenarios_used": 2,
        "cancel_rate": 0.1667,
        "kept_merchants": 3,
    }
    assert (decision.snapshot["open_orders"], decision.snapshot["open_orders_at_merchant"]) == (1, 1)


@pytest.mark.django_db
def test_score_equal_to_the_minimum_and_amount_equal_to_available_are_approved(merchant):
    consumer = ConsumerFactory(
        profile__score=600, profile__credit_limit_amount=Decimal("100.00"), profile__open_exposure_amount=Decimal("80")
    )
    listing = ListingFactory(merchant=merchant, min_score=600)

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="api")

    assert decision.outcome == DecisionOutcome.APPROVED
    assert decision.reasons == []


# --- each rule alone --------------------------------------------------------------------------


def _score_below_minimum():
    return ConsumerFactory(profile__score=599), ListingFactory(min_score=600), Decimal("20.00")


def _score_below_scenario_floor():
    # The merchant asks for 350, but the platform's floor for live shopping is 550.
    listing = ListingFactory(min_score=350, scenario=Scenario.LIVE_SHOPPING)
    return ConsumerFactory(profile__score=549), listing, Decimal("20.00")


def _insufficient_limit():
    consumer = ConsumerFactory(
        profile__credit_limit_amount=Decimal("100.00"), profile__open_exposure_amount=Decimal("80.01")
    )
    return consumer, ListingFactory(), Decimal("20.00")


def _spend_cap_reached():
    consumer = ConsumerFactory(
        profile__spend_cap_amount=Decimal("100.00"), profile__open_exposure_amount=Decimal("80.01")
    )
    return consumer, ListingFactory(), Decimal("20.00")


def _paused():
    consumer = ConsumerFactory(profile__is_paused=True, profile__paused_reason="order #9 overdue")
    return consumer, ListingFactory(), Decimal("20.00")


def _merchant_suspended():
    listing = ListingFactory(merchant=MerchantFactory(status=MerchantStatus.SUSPENDED))
    return ConsumerFactory(), listing, Decimal("20.00")


def _blocked(kind):
    def arrange():
        consumer = ConsumerFactory(id_number_hash="ab" * 32)
        value = {BlocklistKind.CONSUMER: str(consumer.pk), BlocklistKind.PHONE: consumer.phone}.get(kind, "ab" * 32)
        BlocklistEntry.objects.create(kind=kind, value=value, reason="fraud ring")
        return consumer, ListingFactory(), Decimal("20.00")

    return arrange


def _with_features(**values):
    def arrange():
        consumer = ConsumerFactory()
        listing = ListingFactory()
        values.setdefault("open_by_merchant", {})
        if values.pop("at_merchant", None):
            values["open_by_merchant"] = {str(listing.merchant_id): 5}
        ConsumerFeatures.objects.create(consumer=consumer, **values)
        return consumer, listing, Decimal("20.00")

    return arrange


def _times(n, ago):
    return [timezone.now() - ago] * n


def _no_active_scorecard():
    Scorecard.objects.update(is_active=False)
    return ConsumerFactory(), ListingFactory(), Decimal("20.00")


RULES = [
    ("merchant_suspended", _merchant_suspended, ReasonCode.MERCHANT_UNAVAILABLE),
    ("paused", _paused, ReasonCode.ACCOUNT_PAUSED),
    ("blocked_consumer", _blocked(BlocklistKind.CONSUMER), ReasonCode.BLOCKLISTED),
    ("blocked_phone", _blocked(BlocklistKind.PHONE), ReasonCode.BLOCKLISTED),
    ("blocked_id", _blocked(BlocklistKind.ID_HASH), ReasonCode.BLOCKLISTED),
    ("no_scorecard", _no_active_scorecard, ReasonCode.SCORING_UNAVAILABLE),
    ("score_below_minimum", _score_below_minimum, ReasonCode.SCORE_BELOW_MINIMUM),
    ("score_below_floor", _score_below_scenario_floor, ReasonCode.SCORE_BELOW_MINIMUM),
    ("insufficient_limit", _insufficient_limit, ReasonCode.INSUFFICIENT_LIMIT),
    ("spend_cap", _spend_cap_reached, ReasonCode.SPEND_CAP_REACHED),
    ("open_orders", _with_features(open_orders=10), ReasonCode.TOO_MANY_OPEN_ORDERS),
    ("open_at_merchant", _with_features(open_orders=5, at_merchant=True), ReasonCode.TOO_MANY_OPEN_ORDERS_AT_MERCHANT),
    (
        "velocity_hour",
        _with_features(recent_order_times=_times(10, timedelta(minutes=30))),
        ReasonCode.TOO_MANY_ORDERS_THIS_HOUR,
    ),
    (
        "velocity_day",
        _with_features(recent_order_times=_times(30, timedelta(hours=5))),
        ReasonCode.TOO_MANY_ORDERS_TODAY,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("arrange", "code"), [(a, c) for _, a, c in RULES], ids=[name for name, _, _ in RULES])
def test_each_rule_alone_declines_with_exactly_its_reason_and_changes_nothing(arrange, code):
    consumer, listing, amount = arrange()
    before = (_profile_state(consumer), _features_state(consumer))

    decision = admission_assess(consumer=consumer, listing=listing, amount=amount, channel="confirm")

    stored = AdmissionDecision.objects.get()
    assert stored.pk == decision.pk
    assert stored.outcome == DecisionOutcome.DECLINED
    assert not decision.approved
    assert stored.reasons == [_reason(code)]
    assert stored.policy_version == POLICY_VERSION
    assert (_profile_state(consumer), _features_state(consumer)) == before


@pytest.mark.django_db
def test_one_under_each_limit_is_still_approved(listing):
    consumer = ConsumerFactory()
    ConsumerFeatures.objects.create(
        consumer=consumer,
        open_orders=9,
        open_by_merchant={str(listing.merchant_id): 4},
        recent_order_times=_times(9, timedelta(minutes=59)) + _times(20, timedelta(hours=23)),
    )

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="order")

    assert decision.approved
    assert (decision.snapshot["orders_last_hour"], decision.snapshot["orders_last_day"]) == (9, 29)


@pytest.mark.django_db
def test_sign_up_is_not_held_to_the_open_order_and_velocity_rules(listing):
    consumer = ConsumerFactory()
    ConsumerFeatures.objects.create(consumer=consumer, open_orders=10, recent_order_times=_times(30, timedelta(0)))

    assert admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="sign_up").approved


@pytest.mark.django_db
def test_a_lifted_block_no_longer_declines(listing):
    consumer = ConsumerFactory()
    BlocklistEntry.objects.create(
        kind=BlocklistKind.CONSUMER,
        value=str(consumer.pk),
        reason="mistake",
        lifted_at=timezone.now(),
        lift_reason="cleared",
    )

    assert admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="order").approved


@pytest.mark.django_db
def test_several_failed_rules_are_all_listed_in_policy_order(merchant):
    consumer = ConsumerFactory(profile__score=500, profile__is_paused=True, profile__paused_reason="overdue")
    ConsumerFeatures.objects.create(consumer=consumer, open_orders=10)
    BlocklistEntry.objects.create(kind=BlocklistKind.PHONE, value=consumer.phone, reason="abuse")
    listing = ListingFactory(merchant=MerchantFactory(status=MerchantStatus.SUSPENDED))

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("1000.01"), channel="order")

    assert [r["code"] for r in decision.reasons] == [
        "merchant_unavailable",
        "account_paused",
        "blocklisted",
        "score_below_minimum",
        "insufficient_limit",
        "too_many_open_orders",
    ]


@pytest.mark.django_db
def test_a_declined_consumer_is_told_cannot_open_for_now_with_reasons_and_hints():
    consumer, listing, amount = _score_below_minimum()
    decision = admission_assess(consumer=consumer, listing=listing, amount=amount, channel="order")

    explained = admission_decision_explain(decision=decision)

    assert (explained["approved"], explained["headline"], explained["headline_zh"]) == (
        False,
        "Cannot open for now",
        "暂时无法开通",
    )
    assert explained["reasons"] == [_reason(ReasonCode.SCORE_BELOW_MINIMUM)]
    assert explained["reasons"][0]["hint"] == "Paying orders on time and verifying your identity raise your score."
    assert explained["score"] == 599
    assert len(explained["score_reasons"]) == 4


@pytest.mark.django_db
def test_no_scorecard_at_all_reinstalls_the_shipped_default_and_scores(consumer, listing):
    ScorecardEvent.objects.all().delete()
    Scorecard.objects.all().delete()  # a restored or flushed database

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="order")

    card = Scorecard.objects.get()
    assert (card.version, card.is_active, card.source) == ("default-1", True, "default")
    assert list(card.events.values_list("kind", flat=True)) == ["created", "activated"]
    assert decision.approved
    assert decision.scorecard == card


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount", "field"),
    [
        (Decimal("0"), "amount"),
        (Decimal("-1.00"), "amount"),
        (20.0, "amount"),
        ("abc", "amount"),
        (Decimal("1.005"), "amount"),
        (None, "amount"),
        (Decimal("NaN"), "amount"),
    ],
    ids=["zero", "negative", "float", "text", "three-places", "none", "nan"],
)
def test_bad_amounts_raise_and_store_nothing(consumer, listing, amount, field):
    with pytest.raises(ValidationFailed) as refused:
        admission_assess(consumer=consumer, listing=listing, amount=amount, channel="order")
    assert list(refused.value.fields) == [field]
    assert AdmissionDecision.objects.count() == 0


@pytest.mark.django_db
def test_unknown_consumer_listing_or_channel_raise_and_store_nothing(consumer, listing):
    with pytest.raises(ValidationFailed) as unknown_consumer:
        admission_assess(consumer=Consumer(pk=987654), listing=listing, amount=Decimal("5.00"), channel="order")
    with pytest.raises(ValidationFailed) as unsaved_consumer:
        admission_assess(consumer=Consumer(), listing=listing, amount=Decimal("5.00"), channel="order")
    with pytest.raises(ValidationFailed) as unknown_listing:
        admission_assess(consumer=consumer, listing=Listing(pk=987654), amount=Decimal("5.00"), channel="order")
    with pytest.raises(ValidationFailed) as unknown_channel:
        admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="fax")

    assert (unknown_consumer.value.code, unsaved_consumer.value.code) == ("unknown_consumer", "unknown_consumer")
    assert unknown_listing.value.code == "unknown_listing"
    assert list(unknown_channel.value.fields) == ["channel"]
    assert AdmissionDecision.objects.count() == 0


@pytest.mark.django_db
def test_paused_listing_is_an_error_not_a_decision(consumer):
    listing = ListingFactory(status=ListingStatus.PAUSED)

    with pytest.raises(NotAllowed) as refused:
        admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")

    assert (refused.value.code, refused.value.message) == (
        "listing_unavailable",
        "This service is not available right now.",
    )
    assert AdmissionDecision.objects.count() == 0


@pytest.mark.django_db
def test_a_stale_listing_object_is_re_read(consumer):
    listing = ListingFactory()
    Listing.objects.filter(pk=listing.pk).update(status=ListingStatus.PAUSED)

    with pytest.raises(NotAllowed):
        admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")


# --- admin ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_decision_admin_lists_and_shows_reasons_and_snapshot_pretty_printed(admin_client, merchant):
    consumer, listing, amount = _paused()
    decision = admission_assess(consumer=consumer, listing=listing, amount=amount, channel="order")

    changelist = admin_client.get(reverse("admin:scoring_admissiondecision_changelist"))
    declined = admin_client.get(reverse("admin:scoring_admissiondecision_changelist"), {"outcome__exact": "declined"})
    change = admin_client.get(reverse("admin:scoring_admissiondecision_change", args=[decision.pk]))

    assert changelist.status_code == declined.status_code == change.status_code == 200
    assert list(declined.context["cl"].result_list) == [decision]
    page = change.content.decode()
    assert "<pre" in page
    # Indented JSON, escaped into the page, zh-hans kept as characters.
    assert escape('  {\n    "code": "account_paused",') in page
    assert escape('"message_zh": "有逾期订单未付清，先享服务已暂停。"') in page
    assert escape('  "listing_min_score": 550,') in page
    assert "¥20.00" in page


@pytest.mark.django_db
def test_decision_admin_is_read_only(admin_client, consumer, listing):
    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")
    change_url = reverse("admin:scoring_admissiondecision_change", args=[decision.pk])

    assert admin_client.get(reverse("admin:scoring_admissiondecision_add")).status_code == 403
    assert admin_client.post(change_url, {"outcome": "declined"}).status_code == 403
    delete_url = reverse("admin:scoring_admissiondecision_delete", args=[decision.pk])
    assert admin_client.get(delete_url).status_code == 403
    assert AdmissionDecision.objects.get().outcome == DecisionOutcome.APPROVED


@pytest.mark.django_db
def test_decision_admin_changelist_query_count_is_constant(admin_client, consumer, listing):
    url = reverse("admin:scoring_admissiondecision_changelist")
    admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")
    with CaptureQueriesContext(connection) as one_row:
        assert admin_client.get(url).status_code == 200
    for _ in range(4):
        admission_assess(consumer=ConsumerFactory(), listing=ListingFactory(), amount=Decimal("5.00"), channel="api")
    with CaptureQueriesContext(connection) as five_rows:
        assert admin_client.get(url).status_code == 200

    assert len(five_rows) == len(one_row)


@pytest.mark.django_db
def test_admission_reads_a_constant_number_of_rows(consumer, listing):
    admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")  # warm the card cache
    ConsumerFeatures.objects.create(consumer=consumer, fulfilled_count=40, orders_total=45)

    with CaptureQueriesContext(connection) as queries:
        admission_assess(consumer=consumer, listing=listing, amount=Decimal("5.00"), channel="order")

    # The listing with its merchant; the consumer with profile, features, blocklist and active card; the insert.
    assert len(queries) == 3
