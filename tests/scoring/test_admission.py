"""admission_assess (foundation policy): every decision stored with reasons and a snapshot; nothing else moves."""

from __future__ import annotations

from decimal import Decimal
from html import escape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from consumers.models import CreditProfile
from merchants.choices import ListingStatus, MerchantStatus
from scoring.choices import DecisionChannel, DecisionOutcome, ReasonCode
from scoring.models import AdmissionDecision
from scoring.services import POLICY_VERSION, admission_assess
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory


def _profile_state(consumer) -> tuple:
    profile = CreditProfile.objects.get(consumer=consumer)
    return (profile.score, profile.credit_limit_amount, profile.open_exposure_amount, profile.is_paused)


def _reason(code: ReasonCode) -> dict[str, str]:
    return {"code": code.value, "message": str(code.label)}


@pytest.mark.django_db
def test_approved_decision_is_stored_with_snapshot_and_policy_version(consumer, listing):
    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="order")

    stored = AdmissionDecision.objects.get()
    assert stored.pk == decision.pk
    assert decision.approved
    assert (stored.consumer, stored.listing, stored.amount) == (consumer, listing, Decimal("20.00"))
    assert (stored.channel, stored.outcome) == (DecisionChannel.ORDER, DecisionOutcome.APPROVED)
    assert stored.reasons == []
    assert stored.policy_version == POLICY_VERSION == "foundation-1"
    assert stored.latency_ms >= 0
    assert stored.snapshot == {
        "score": 650,
        "credit_limit_amount": "1000.00",
        "open_exposure_amount": "0.00",
        "available_amount": "1000.00",
        "is_paused": False,
        "listing_min_score": 550,
        "merchant_status": "approved",
        "listing_status": "active",
    }
    # An assessment decides; it holds nothing (the credit hold is the order service's job).
    assert _profile_state(consumer) == (650, Decimal("1000.00"), Decimal("0.00"), False)


@pytest.mark.django_db
def test_score_equal_to_the_minimum_and_amount_equal_to_available_are_approved(merchant):
    consumer = ConsumerFactory(
        profile__score=600, profile__credit_limit_amount=Decimal("100.00"), profile__open_exposure_amount=Decimal("80")
    )
    listing = ListingFactory(merchant=merchant, min_score=600)

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("20.00"), channel="api")

    assert decision.outcome == DecisionOutcome.APPROVED
    assert decision.reasons == []


def _score_below_minimum():
    return ConsumerFactory(profile__score=599), ListingFactory(min_score=600), Decimal("20.00")


def _insufficient_limit():
    consumer = ConsumerFactory(
        profile__credit_limit_amount=Decimal("100.00"), profile__open_exposure_amount=Decimal("80.01")
    )
    return consumer, ListingFactory(), Decimal("20.00")


def _paused():
    consumer = ConsumerFactory(profile__is_paused=True, profile__paused_reason="order #9 overdue")
    return consumer, ListingFactory(), Decimal("20.00")


def _listing_paused():
    return ConsumerFactory(), ListingFactory(status=ListingStatus.PAUSED), Decimal("20.00")


def _merchant_suspended():
    listing = ListingFactory(merchant=MerchantFactory(status=MerchantStatus.SUSPENDED))
    return ConsumerFactory(), listing, Decimal("20.00")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (_score_below_minimum, ReasonCode.SCORE_BELOW_MINIMUM),
        (_insufficient_limit, ReasonCode.INSUFFICIENT_LIMIT),
        (_paused, ReasonCode.ACCOUNT_PAUSED),
        (_listing_paused, ReasonCode.LISTING_UNAVAILABLE),
        (_merchant_suspended, ReasonCode.MERCHANT_UNAVAILABLE),
    ],
    ids=["score_below_minimum", "insufficient_limit", "paused", "listing_paused", "merchant_suspended"],
)
def test_each_rule_alone_declines_with_exactly_its_reason_and_changes_nothing(arrange, code):
    consumer, listing, amount = arrange()
    before = _profile_state(consumer)

    decision = admission_assess(consumer=consumer, listing=listing, amount=amount, channel="confirm")

    stored = AdmissionDecision.objects.get()
    assert stored.pk == decision.pk
    assert stored.outcome == DecisionOutcome.DECLINED
    assert not decision.approved
    assert stored.reasons == [_reason(code)]
    assert stored.policy_version == POLICY_VERSION
    assert _profile_state(consumer) == before


@pytest.mark.django_db
def test_insufficient_limit_snapshot_shows_what_the_decision_read():
    consumer, listing, amount = _insufficient_limit()

    decision = admission_assess(consumer=consumer, listing=listing, amount=amount, channel="order")

    assert decision.snapshot["credit_limit_amount"] == "100.00"
    assert decision.snapshot["open_exposure_amount"] == "80.01"
    assert decision.snapshot["available_amount"] == "19.99"


@pytest.mark.django_db
def test_several_failed_rules_are_all_listed_in_order(merchant):
    consumer = ConsumerFactory(profile__score=500, profile__is_paused=True, profile__paused_reason="overdue")
    listing = ListingFactory(merchant=merchant, status=ListingStatus.PAUSED)

    decision = admission_assess(consumer=consumer, listing=listing, amount=Decimal("1000.01"), channel="order")

    assert decision.reasons == [
        _reason(ReasonCode.LISTING_UNAVAILABLE),
        _reason(ReasonCode.ACCOUNT_PAUSED),
        _reason(ReasonCode.SCORE_BELOW_MINIMUM),
        _reason(ReasonCode.INSUFFICIENT_LIMIT),
    ]


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
    # Indented JSON, escaped into the page.
    assert escape('  {\n    "code": "account_paused",') in page
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
