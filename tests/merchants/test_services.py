"""Tests for merchants.services (onboarding, review transitions, members, listings) and merchants.selectors.

Every refusal re-reads the rows from the database and asserts that nothing changed, including
that no event row was written.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from bnpl.exceptions import InvalidTransition, NotAllowed, ValidationFailed
from merchants import selectors
from merchants.choices import ConfirmMode, ListingStatus, MemberRole, MerchantCategory, MerchantStatus, Scenario
from merchants.models import Listing, Merchant, MerchantEvent, MerchantMember
from merchants.services import (
    listing_create,
    listing_pause,
    listing_resume,
    listing_update,
    member_add,
    member_change_role,
    member_remove,
    merchant_approve,
    merchant_create,
    merchant_fee_rate_set,
    merchant_reinstate,
    merchant_reject,
    merchant_submit,
    merchant_suspend,
    merchant_update_application,
)
from tests.factories import ListingFactory, MerchantFactory, MerchantMemberFactory, UserFactory, make_uscc

pytestmark = pytest.mark.django_db

ALL_SCENARIOS = [scenario.value for scenario in Scenario]


def application(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "legal_name": "杭州先享科技有限公司",
        "display_name": "先享充电",
        "uscc": make_uscc(900001),
        "contact_name": "王五",
        "contact_phone": "13912345678",
        "categories": [MerchantCategory.EBIKE_CHARGING],
        "settlement_bank_name": "招商银行杭州分行",
        "settlement_account_name": "杭州先享科技有限公司",
        "settlement_account_number": "6225880123456789",
    }
    values.update(overrides)
    return values


def with_wrong_check_character(uscc: str) -> str:
    return uscc[:-1] + ("0" if uscc[-1] != "0" else "1")


def merchant_in(status: str, **extra: Any) -> Merchant:
    """A merchant as it would look in ``status`` (rejected ones carry a reason, drafts no dates)."""
    if status == MerchantStatus.REJECTED:
        extra.setdefault("rejection_reason", "营业执照不清晰")
    if status == MerchantStatus.DRAFT:
        extra.setdefault("submitted_at", None)
    if status in (MerchantStatus.DRAFT, MerchantStatus.SUBMITTED, MerchantStatus.REJECTED):
        extra.setdefault("approved_at", None)
    return MerchantFactory(status=status, **extra)


def row(instance: Any) -> dict[str, Any]:
    """Every stored column of the row, re-read from the database."""
    fresh = type(instance).objects.get(pk=instance.pk)
    return {field.attname: getattr(fresh, field.attname) for field in type(instance)._meta.concrete_fields}


def events(merchant: Merchant) -> list[tuple[int | None, str, str, str]]:
    return list(
        MerchantEvent.objects.filter(merchant=merchant)
        .order_by("created_at", "id")
        .values_list("actor_id", "from_status", "to_status", "reason")
    )


# --------------------------------------------------------------------------- merchant_create


def test_create_starts_a_draft_with_normalised_fields_an_event_and_the_applicant_as_owner(settings):
    settings.BNPL_DEFAULT_FEE_RATE = Decimal("0.0060")
    applicant = UserFactory()
    uscc = make_uscc(900001)
    spaced_uscc = f"{uscc[:6]} {uscc[6:12]}-{uscc[12:]}".lower()

    merchant = merchant_create(
        actor=applicant,
        **application(
            uscc=spaced_uscc,
            contact_phone="+86 139-1234-5678",
            categories=[MerchantCategory.SWIMMING_FITNESS, MerchantCategory.EBIKE_CHARGING],
            settlement_account_number="6225 8801 2345 6789",
            legal_name="  杭州先享科技有限公司 ",
        ),
    )

    stored = Merchant.objects.get(pk=merchant.pk)
    assert stored.status == MerchantStatus.DRAFT
    assert stored.uscc == uscc
    assert stored.contact_phone == "13912345678"
    assert stored.categories == [MerchantCategory.EBIKE_CHARGING, MerchantCategory.SWIMMING_FITNESS]
    assert stored.settlement_account_number == "6225880123456789"
    assert stored.legal_name == "杭州先享科技有限公司"
    assert stored.fee_rate == Decimal("0.0060")
    assert stored.submitted_at is None
    assert stored.approved_at is None
    assert events(stored) == [(applicant.pk, "", MerchantStatus.DRAFT, "")]
    assert list(MerchantMember.objects.filter(merchant=stored).values_list("user_id", "role")) == [
        (applicant.pk, MemberRole.OWNER)
    ]


def test_create_by_staff_or_system_makes_no_member_and_takes_a_given_fee_rate():
    staff = UserFactory(is_staff=True)

    by_staff = merchant_create(actor=staff, fee_rate="0.0035", **application())
    by_system = merchant_create(actor=None, **application(uscc=make_uscc(900002)))

    assert MerchantMember.objects.count() == 0
    assert Merchant.objects.get(pk=by_staff.pk).fee_rate == Decimal("0.0035")
    assert events(by_staff) == [(staff.pk, "", MerchantStatus.DRAFT, "")]
    assert events(by_system) == [(None, "", MerchantStatus.DRAFT, "")]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"uscc": with_wrong_check_character(make_uscc(900001))}, "uscc"),
        ({"uscc": "91330106MA2"}, "uscc"),
        ({"contact_phone": "12912345678"}, "contact_phone"),
        ({"contact_phone": "1391234567"}, "contact_phone"),
        ({"contact_email": "not-an-email"}, "contact_email"),
        ({"settlement_account_number": "6225-ABC"}, "settlement_account_number"),
        ({"categories": []}, "categories"),
        ({"categories": ["car_rental"]}, "categories"),
        ({"display_name": "   "}, "display_name"),
        ({"legal_name": "x" * 201}, "legal_name"),
    ],
)
def test_create_refuses_invalid_input_with_a_field_error_and_saves_nothing(overrides, field):
    with pytest.raises(ValidationFailed) as caught:
        merchant_create(actor=UserFactory(), **application(**overrides))

    assert list(caught.value.fields) == [field]
    assert Merchant.objects.count() == 0
    assert MerchantEvent.objects.count() == 0
    assert MerchantMember.objects.count() == 0


def test_create_reports_every_missing_required_field_at_once():
    values = application(contact_name="", settlement_bank_name="", settlement_account_name="")

    with pytest.raises(ValidationFailed) as caught:
        merchant_create(actor=None, **values)

    assert set(caught.value.fields) == {"contact_name", "settlement_bank_name", "settlement_account_name"}
    assert Merchant.objects.count() == 0


def test_create_refuses_excluded_categories_naming_each_one():
    categories = [MerchantCategory.EBIKE_CHARGING, MerchantCategory.LUXURY_GOODS, MerchantCategory.PREMIUM_LIQUOR]

    with pytest.raises(ValidationFailed) as caught:
        merchant_create(actor=UserFactory(), **application(categories=categories))

    assert list(caught.value.fields) == ["categories"]
    message = caught.value.fields["categories"]
    assert str(MerchantCategory.LUXURY_GOODS.label) in message
    assert str(MerchantCategory.PREMIUM_LIQUOR.label) in message
    assert str(MerchantCategory.EBIKE_CHARGING.label) not in message
    assert Merchant.objects.count() == 0
    assert MerchantEvent.objects.count() == 0


def test_create_refuses_a_uscc_already_registered_in_another_spelling():
    existing = MerchantFactory(uscc=make_uscc(900001))

    with pytest.raises(ValidationFailed) as caught:
        merchant_create(actor=UserFactory(), **application(uscc=" " + make_uscc(900001).lower()))

    assert list(caught.value.fields) == ["uscc"]
    assert list(Merchant.objects.values_list("pk", flat=True)) == [existing.pk]
    assert MerchantEvent.objects.count() == 0


@pytest.mark.parametrize("fee_rate", ["0.1001", "-0.001", "0.00601", "abc", 0.006])
def test_create_refuses_a_fee_rate_out_of_range_or_given_as_float(fee_rate):
    with pytest.raises(ValidationFailed) as caught:
        merchant_create(actor=None, fee_rate=fee_rate, **application())

    assert list(caught.value.fields) == ["fee_rate"]
    assert Merchant.objects.count() == 0


# --------------------------------------------------------------------------- merchant_update_application


@pytest.mark.parametrize("status", [MerchantStatus.DRAFT, MerchantStatus.REJECTED])
def test_update_application_edits_a_draft_or_rejected_application_without_an_event(status):
    merchant = merchant_in(status, contact_phone="13900000001", categories=[MerchantCategory.EBIKE_CHARGING])

    updated = merchant_update_application(
        actor=UserFactory(),
        merchant=merchant,
        contact_phone="+8613811112222",
        categories=[MerchantCategory.EXPRESS_DELIVERY, MerchantCategory.EBIKE_CHARGING],
        city="宁波",
    )

    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.contact_phone, stored.city, stored.status) == ("13811112222", "宁波", status)
    assert stored.categories == [MerchantCategory.EBIKE_CHARGING, MerchantCategory.EXPRESS_DELIVERY]
    assert updated.contact_phone == "13811112222"
    assert events(stored) == []


@pytest.mark.parametrize("status", [MerchantStatus.SUBMITTED, MerchantStatus.APPROVED, MerchantStatus.SUSPENDED])
def test_update_application_is_refused_once_submitted_and_changes_nothing(status):
    merchant = merchant_in(status)
    before = row(merchant)

    with pytest.raises(InvalidTransition) as caught:
        merchant_update_application(actor=None, merchant=merchant, city="宁波")

    assert str(MerchantStatus(status).label) in caught.value.message
    assert f"({status})" in caught.value.message
    assert row(merchant) == before
    assert events(merchant) == []


def test_update_application_refuses_invalid_phone_and_a_taken_uscc_and_changes_nothing():
    other = MerchantFactory()
    merchant = merchant_in(MerchantStatus.DRAFT)
    before = row(merchant)

    with pytest.raises(ValidationFailed) as bad_phone:
        merchant_update_application(actor=None, merchant=merchant, contact_phone="123", city="宁波")
    with pytest.raises(ValidationFailed) as taken:
        merchant_update_application(actor=None, merchant=merchant, uscc=other.uscc)

    assert list(bad_phone.value.fields) == ["contact_phone"]
    assert list(taken.value.fields) == ["uscc"]
    assert row(merchant) == before


def test_update_application_accepts_the_merchants_own_uscc():
    merchant = merchant_in(MerchantStatus.DRAFT)

    merchant_update_application(actor=None, merchant=merchant, uscc=merchant.uscc.lower(), city="宁波")

    assert Merchant.objects.get(pk=merchant.pk).city == "宁波"


def test_fee_rate_set_changes_the_rate_and_records_it_on_the_timeline():
    staff = UserFactory(is_staff=True)
    merchant = merchant_in(MerchantStatus.APPROVED, fee_rate=Decimal("0.0060"))

    merchant_fee_rate_set(actor=staff, merchant=merchant, fee_rate="0.0045")

    assert Merchant.objects.get(pk=merchant.pk).fee_rate == Decimal("0.0045")
    assert events(merchant) == [
        (staff.pk, MerchantStatus.APPROVED, MerchantStatus.APPROVED, "Fee rate changed from 0.0060 to 0.0045.")
    ]


def test_fee_rate_set_refuses_more_than_ten_percent_and_changes_nothing():
    merchant = merchant_in(MerchantStatus.APPROVED)
    before = row(merchant)

    with pytest.raises(ValidationFailed) as caught:
        merchant_fee_rate_set(actor=None, merchant=merchant, fee_rate="0.2")

    assert list(caught.value.fields) == ["fee_rate"]
    assert row(merchant) == before
    assert events(merchant) == []


# --------------------------------------------------------------------------- transitions

REASON = "资料核验"
TRANSITIONS: dict[str, tuple[Any, frozenset[str], str, bool]] = {
    # name: (service, allowed from, to, takes a reason)
    "submit": (
        merchant_submit,
        frozenset({MerchantStatus.DRAFT, MerchantStatus.REJECTED}),
        MerchantStatus.SUBMITTED,
        False,
    ),
    "approve": (merchant_approve, frozenset({MerchantStatus.SUBMITTED}), MerchantStatus.APPROVED, False),
    "reject": (merchant_reject, frozenset({MerchantStatus.SUBMITTED}), MerchantStatus.REJECTED, True),
    "suspend": (merchant_suspend, frozenset({MerchantStatus.APPROVED}), MerchantStatus.SUSPENDED, True),
    "reinstate": (merchant_reinstate, frozenset({MerchantStatus.SUSPENDED}), MerchantStatus.APPROVED, True),
}
ALLOWED = [(name, status) for name, (_s, allowed, _t, _r) in TRANSITIONS.items() for status in sorted(allowed)]
REFUSED = [
    (name, status.value)
    for name, (_s, allowed, _t, _r) in TRANSITIONS.items()
    for status in MerchantStatus
    if status not in allowed
]


def run(name: str, *, actor: Any, merchant: Merchant, reason: str = REASON) -> Merchant:
    service, _allowed, _to, takes_reason = TRANSITIONS[name]
    if takes_reason:
        return service(actor=actor, merchant=merchant, reason=reason)
    return service(actor=actor, merchant=merchant)


@pytest.mark.parametrize(("name", "from_status"), ALLOWED)
def test_each_allowed_transition_moves_the_status_and_writes_one_event(name, from_status):
    actor = UserFactory(is_staff=True)
    merchant = merchant_in(from_status)
    before = row(merchant)
    _service, _allowed, to_status, takes_reason = TRANSITIONS[name]

    result = run(name, actor=actor, merchant=merchant)

    after = row(merchant)
    assert result.status == to_status
    assert after["status"] == to_status
    assert events(merchant) == [(actor.pk, from_status, to_status, REASON if takes_reason else "")]
    if name == "submit":
        assert after["submitted_at"] > before["updated_at"]
        assert after["rejection_reason"] == ""
    if name == "approve":
        assert after["approved_at"] > before["updated_at"]
    if name == "reject":
        assert after["rejection_reason"] == REASON
    if name == "reinstate":
        assert after["approved_at"] == before["approved_at"]
    if name in ("suspend", "reinstate", "approve", "reject"):
        assert after["submitted_at"] == before["submitted_at"]


@pytest.mark.parametrize(("name", "status"), REFUSED)
def test_each_refused_transition_names_the_current_state_and_changes_nothing(name, status):
    merchant = merchant_in(status)
    before = row(merchant)

    with pytest.raises(InvalidTransition) as caught:
        run(name, actor=UserFactory(is_staff=True), merchant=merchant)

    assert str(MerchantStatus(status).label) in caught.value.message
    assert f"({status})" in caught.value.message
    assert caught.value.code == "invalid_state"
    assert row(merchant) == before
    assert events(merchant) == []


@pytest.mark.parametrize("name", ["reject", "suspend", "reinstate"])
@pytest.mark.parametrize("reason", ["", "   "])
def test_transitions_that_need_a_reason_refuse_a_blank_one_and_change_nothing(name, reason):
    _service, allowed, _to, _r = TRANSITIONS[name]
    merchant = merchant_in(next(iter(allowed)))
    before = row(merchant)

    with pytest.raises(ValidationFailed) as caught:
        run(name, actor=None, merchant=merchant, reason=reason)

    assert list(caught.value.fields) == ["reason"]
    assert row(merchant) == before
    assert events(merchant) == []


def test_reject_stores_the_reason_stripped():
    merchant = merchant_in(MerchantStatus.SUBMITTED)

    merchant_reject(actor=None, merchant=merchant, reason="  营业执照已过期  ")

    assert Merchant.objects.get(pk=merchant.pk).rejection_reason == "营业执照已过期"
    assert events(merchant) == [(None, MerchantStatus.SUBMITTED, MerchantStatus.REJECTED, "营业执照已过期")]


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        ({"contact_phone": "123"}, "contact_phone"),
        ({"categories": [MerchantCategory.EBIKE_CHARGING, MerchantCategory.JEWELLERY_GOLD]}, "categories"),
        ({"settlement_bank_name": ""}, "settlement_bank_name"),
    ],
)
def test_submit_validates_the_whole_application_again_and_changes_nothing_when_invalid(stored, field):
    # Rows written around the services (an import, an old rule) can hold what create would refuse.
    merchant = merchant_in(MerchantStatus.DRAFT, **stored)
    before = row(merchant)

    with pytest.raises(ValidationFailed) as caught:
        merchant_submit(actor=None, merchant=merchant)

    assert list(caught.value.fields) == [field]
    assert row(merchant) == before
    assert events(merchant) == []


def test_a_full_review_cycle_keeps_the_timeline_in_order():
    applicant, reviewer = UserFactory(), UserFactory(is_staff=True)
    merchant = merchant_create(actor=applicant, **application())

    merchant_submit(actor=applicant, merchant=merchant)
    merchant_reject(actor=reviewer, merchant=merchant, reason="开户名称与营业执照不一致")
    merchant_update_application(actor=applicant, merchant=merchant, settlement_account_name="杭州先享科技有限公司")
    merchant_submit(actor=applicant, merchant=merchant)
    merchant_approve(actor=reviewer, merchant=merchant)

    assert events(merchant) == [
        (applicant.pk, "", "draft", ""),
        (applicant.pk, "draft", "submitted", ""),
        (reviewer.pk, "submitted", "rejected", "开户名称与营业执照不一致"),
        (applicant.pk, "rejected", "submitted", ""),
        (reviewer.pk, "submitted", "approved", ""),
    ]
    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.status, stored.rejection_reason) == (MerchantStatus.APPROVED, "")


@pytest.mark.django_db(transaction=True)
def test_concurrent_approve_and_reject_let_exactly_one_win():
    merchant = merchant_in(MerchantStatus.SUBMITTED)
    reviewers = [UserFactory(is_staff=True), UserFactory(is_staff=True)]
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def attempt(name: str, actor: Any) -> None:
        try:
            barrier.wait(timeout=10)
            run(name, actor=actor, merchant=merchant)
            outcomes[name] = "ok"
        except InvalidTransition:
            outcomes[name] = "refused"
        finally:
            connection.close()

    threads = [
        threading.Thread(target=attempt, args=("approve", reviewers[0])),
        threading.Thread(target=attempt, args=("reject", reviewers[1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["ok", "refused"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "ok")
    expected = MerchantStatus.APPROVED if winner == "approve" else MerchantStatus.REJECTED
    assert Merchant.objects.get(pk=merchant.pk).status == expected
    assert [event[1:3] for event in events(merchant)] == [(MerchantStatus.SUBMITTED, expected)]


# --------------------------------------------------------------------------- members


def test_member_add_gives_a_user_a_role():
    merchant = MerchantFactory()
    user = UserFactory()

    member = member_add(actor=None, merchant=merchant, user=user, role=MemberRole.FINANCE)

    assert list(MerchantMember.objects.values_list("pk", "merchant_id", "user_id", "role")) == [
        (member.pk, merchant.pk, user.pk, MemberRole.FINANCE)
    ]


def test_member_add_refuses_a_second_membership_and_an_unknown_role():
    existing = MerchantMemberFactory(role=MemberRole.OWNER)

    with pytest.raises(ValidationFailed) as duplicate:
        member_add(actor=None, merchant=existing.merchant, user=existing.user, role=MemberRole.VIEWER)
    with pytest.raises(ValidationFailed) as bad_role:
        member_add(actor=None, merchant=existing.merchant, user=UserFactory(), role="boss")

    assert list(duplicate.value.fields) == ["user"]
    assert list(bad_role.value.fields) == ["role"]
    assert list(MerchantMember.objects.values_list("pk", "role")) == [(existing.pk, MemberRole.OWNER)]


def test_the_last_owner_cannot_be_demoted_or_removed():
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    operator = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.OWNER)
    member_change_role(actor=None, member=operator, role=MemberRole.OPERATOR)
    before = row(owner)

    with pytest.raises(NotAllowed):
        member_change_role(actor=None, member=owner, role=MemberRole.VIEWER)
    with pytest.raises(NotAllowed):
        member_remove(actor=None, member=owner)

    assert row(owner) == before
    assert MerchantMember.objects.filter(merchant=owner.merchant).count() == 2


def test_an_owner_can_be_demoted_or_removed_while_another_owner_remains():
    first = MerchantMemberFactory(role=MemberRole.OWNER)
    second = MerchantMemberFactory(merchant=first.merchant, role=MemberRole.OWNER)
    third = MerchantMemberFactory(merchant=first.merchant, role=MemberRole.OWNER)

    member_change_role(actor=None, member=first, role=MemberRole.OPERATOR)
    member_remove(actor=None, member=second)

    assert list(MerchantMember.objects.order_by("pk").values_list("pk", "role")) == [
        (first.pk, MemberRole.OPERATOR),
        (third.pk, MemberRole.OWNER),
    ]


def test_a_non_owner_can_be_removed_and_promoted():
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    viewer = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)
    finance = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.FINANCE)

    member_remove(actor=None, member=viewer)
    member_change_role(actor=None, member=finance, role=MemberRole.OWNER)

    assert list(MerchantMember.objects.order_by("pk").values_list("pk", "role")) == [
        (owner.pk, MemberRole.OWNER),
        (finance.pk, MemberRole.OWNER),
    ]


# --------------------------------------------------------------------------- listings

RULES = {
    "fixed": (
        Scenario.LIVE_SHOPPING,
        {"kind": "fixed", "price": "99"},
        {"kind": "fixed", "price": "99.00", "name": "商品金额"},
    ),
    "per_unit": (
        Scenario.EBIKE_CHARGING,
        {"kind": "per_unit", "unit": "hour", "unit_price": "1"},
        {
            "kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "0",
            "minimum_amount": "0.00",
            "cap_per_24h": None,
            "round_up": False,
        },
    ),
    "tiered": (
        Scenario.EBIKE_CHARGING,
        {
            "kind": "tiered",
            "unit": "kwh",
            "tiers": [{"up_to": "10", "unit_price": "1.2"}, {"up_to": None, "unit_price": "0.8"}],
        },
        {
            "kind": "tiered",
            "unit": "kwh",
            "tiers": [{"up_to": "10", "unit_price": "1.20"}, {"up_to": None, "unit_price": "0.80"}],
            "free_units": "0",
        },
    ),
    "express": (
        Scenario.EXPRESS_DELIVERY,
        {"kind": "express", "first_weight_kg": "1", "first_weight_fee": "12", "additional_per_kg": "2"},
        {
            "kind": "express",
            "first_weight_kg": "1",
            "first_weight_fee": "12.00",
            "additional_per_kg": "2.00",
            "packaging_fee": "0.00",
            "insurance_rate": "0",
            "insurance_min_fee": "0.00",
        },
    ),
}


@pytest.fixture
def seller(db) -> Merchant:
    return MerchantFactory(categories=ALL_SCENARIOS)


def listing_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "电动车充电",
        "scenario": Scenario.EBIKE_CHARGING,
        "max_amount": "20.00",
        "pricing_rule": RULES["per_unit"][1],
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize("kind", list(RULES))
def test_listing_create_stores_each_rule_kind_normalised(seller, kind):
    scenario, rule, normalised = RULES[kind]

    listing = listing_create(
        actor=None,
        merchant=seller,
        title=f" {kind} ",
        scenario=scenario,
        max_amount="100.00",
        pricing_rule=rule,
        confirm_mode=ConfirmMode.AGREEMENT,
        min_score=600,
        order_ttl_minutes=60,
        description="先享后付",
    )

    stored = Listing.objects.get(pk=listing.pk)
    assert stored.pricing_rule == normalised
    assert (stored.title, stored.scenario, stored.max_amount, stored.status) == (
        kind,
        scenario,
        Decimal("100.00"),
        ListingStatus.ACTIVE,
    )
    assert (stored.confirm_mode, stored.min_score, stored.order_ttl_minutes, stored.description) == (
        ConfirmMode.AGREEMENT,
        600,
        60,
        "先享后付",
    )


def test_listing_create_uses_the_defaults(seller):
    listing = listing_create(actor=None, merchant=seller, **listing_values())

    stored = Listing.objects.get(pk=listing.pk)
    assert (stored.confirm_mode, stored.min_score, stored.order_ttl_minutes, stored.description) == (
        ConfirmMode.EACH_TIME,
        550,
        30,
        "",
    )


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        ({"kind": "per_unit", "unit": "hour", "unit_price": "-1"}, ["pricing_rule.unit_price"]),
        ({"kind": "per_unit", "unit": "hour", "unit_price": 1.5}, ["pricing_rule.unit_price"]),
        ({"kind": "bogus"}, ["pricing_rule.kind"]),
        (
            {"kind": "tiered", "unit": "kwh", "tiers": [{"up_to": "10", "unit_price": "1"}]},
            ["pricing_rule.tiers[0].up_to"],
        ),
        ({"kind": "fixed"}, ["pricing_rule.price"]),
        (["not", "a", "mapping"], ["pricing_rule"]),
    ],
)
def test_listing_create_refuses_an_invalid_rule_with_prefixed_field_errors_and_saves_nothing(seller, rule, fields):
    with pytest.raises(ValidationFailed) as caught:
        listing_create(actor=None, merchant=seller, **listing_values(pricing_rule=rule))

    assert list(caught.value.fields) == fields
    assert Listing.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_amount": "0"}, "max_amount"),
        ({"max_amount": "12.345"}, "max_amount"),
        ({"max_amount": 12.5}, "max_amount"),
        ({"min_score": 349}, "min_score"),
        ({"min_score": 951}, "min_score"),
        ({"order_ttl_minutes": 0}, "order_ttl_minutes"),
        ({"order_ttl_minutes": 43201}, "order_ttl_minutes"),
        ({"title": " "}, "title"),
        ({"confirm_mode": "sometimes"}, "confirm_mode"),
        ({"scenario": "car_rental"}, "scenario"),
        ({"scenario": Scenario.LIVE_SHOPPING, "pricing_rule": {"kind": "fixed", "price": "30.01"}}, "max_amount"),
    ],
)
def test_listing_create_refuses_invalid_fields_and_saves_nothing(seller, overrides, field):
    values = listing_values(max_amount="30.00")
    values.update(overrides)

    with pytest.raises(ValidationFailed) as caught:
        listing_create(actor=None, merchant=seller, **values)

    assert list(caught.value.fields) == [field]
    assert Listing.objects.count() == 0


def test_listing_accepts_the_bounds_of_score_and_time_to_live(seller):
    low = listing_create(actor=None, merchant=seller, **listing_values(min_score=350, order_ttl_minutes=1))
    high = listing_create(actor=None, merchant=seller, **listing_values(min_score=950, order_ttl_minutes=43200))

    assert (low.min_score, low.order_ttl_minutes, high.min_score, high.order_ttl_minutes) == (350, 1, 950, 43200)


def test_listing_create_refuses_a_scenario_outside_the_merchants_categories():
    merchant = MerchantFactory(categories=[MerchantCategory.EBIKE_CHARGING])

    with pytest.raises(ValidationFailed) as caught:
        listing_create(
            actor=None,
            merchant=merchant,
            **listing_values(scenario=Scenario.EXPRESS_DELIVERY, pricing_rule=RULES["express"][1]),
        )

    assert list(caught.value.fields) == ["scenario"]
    assert Listing.objects.count() == 0


@pytest.mark.parametrize("status", [MerchantStatus.DRAFT, MerchantStatus.SUBMITTED, MerchantStatus.APPROVED])
def test_merchants_under_review_or_approved_may_prepare_listings(status):
    merchant = merchant_in(status)

    listing = listing_create(actor=None, merchant=merchant, **listing_values())

    assert Listing.objects.filter(merchant=merchant).count() == 1
    assert listing.status == ListingStatus.ACTIVE


@pytest.mark.parametrize("status", [MerchantStatus.REJECTED, MerchantStatus.SUSPENDED])
def test_rejected_or_suspended_merchants_may_not_create_or_update_listings(status):
    merchant = merchant_in(status)
    existing = ListingFactory(merchant=merchant)
    before = row(existing)

    with pytest.raises(NotAllowed) as creating:
        listing_create(actor=None, merchant=merchant, **listing_values())
    with pytest.raises(NotAllowed):
        listing_update(actor=None, listing=existing, title="新标题")

    assert f"({status})" in creating.value.message
    assert list(Listing.objects.values_list("pk", flat=True)) == [existing.pk]
    assert row(existing) == before


def test_listing_update_stores_the_new_rule_normalised(listing):
    listing_update(
        actor=None,
        listing=listing,
        pricing_rule={"kind": "per_unit", "unit": "hour", "unit_price": "1.5", "cap_per_24h": "15"},
        max_amount="30",
        title="快充",
    )

    stored = Listing.objects.get(pk=listing.pk)
    assert stored.pricing_rule == {
        "kind": "per_unit",
        "unit": "hour",
        "unit_price": "1.50",
        "free_units": "0",
        "minimum_amount": "0.00",
        "cap_per_24h": "15.00",
        "round_up": False,
    }
    assert (stored.max_amount, stored.title) == (Decimal("30.00"), "快充")


def test_listing_update_refuses_invalid_values_and_changes_nothing(listing):
    before = row(listing)

    with pytest.raises(ValidationFailed) as bad_rule:
        listing_update(
            actor=None, listing=listing, pricing_rule={"kind": "per_unit", "unit": "year", "unit_price": "1"}
        )
    with pytest.raises(ValidationFailed) as bad_scenario:
        listing_update(actor=None, listing=listing, scenario=Scenario.SWIMMING_FITNESS, title="游泳")

    assert list(bad_rule.value.fields) == ["pricing_rule.unit"]
    assert list(bad_scenario.value.fields) == ["scenario"]
    assert row(listing) == before


def test_listing_update_checks_a_fixed_price_against_the_current_ceiling():
    merchant = MerchantFactory(categories=[MerchantCategory.LIVE_SHOPPING])
    listing = ListingFactory(
        merchant=merchant,
        scenario=Scenario.LIVE_SHOPPING,
        max_amount=Decimal("50.00"),
        pricing_rule={"kind": "fixed", "price": "50.00", "name": "商品金额"},
    )
    before = row(listing)

    with pytest.raises(ValidationFailed) as caught:
        listing_update(actor=None, listing=listing, max_amount="49.99")

    assert list(caught.value.fields) == ["max_amount"]
    assert row(listing) == before


def test_pause_and_resume_move_the_listing_between_on_sale_and_paused(listing):
    listing_pause(actor=None, listing=listing)
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.PAUSED

    listing_resume(actor=None, listing=listing)
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.ACTIVE


def test_pausing_a_paused_listing_or_resuming_an_active_one_is_refused(listing):
    paused = ListingFactory(merchant=listing.merchant, status=ListingStatus.PAUSED)
    before_active, before_paused = row(listing), row(paused)

    with pytest.raises(InvalidTransition) as resuming:
        listing_resume(actor=None, listing=listing)
    with pytest.raises(InvalidTransition) as pausing:
        listing_pause(actor=None, listing=paused)

    assert "(active)" in resuming.value.message
    assert "(paused)" in pausing.value.message
    assert (row(listing), row(paused)) == (before_active, before_paused)


@pytest.mark.parametrize("status", [MerchantStatus.SUSPENDED, MerchantStatus.SUBMITTED])
def test_resume_is_refused_while_the_merchant_is_not_approved(status):
    listing = ListingFactory(merchant=merchant_in(status), status=ListingStatus.PAUSED)
    before = row(listing)

    with pytest.raises(NotAllowed) as caught:
        listing_resume(actor=None, listing=listing)

    assert f"({status})" in caught.value.message
    assert row(listing) == before


# --------------------------------------------------------------------------- selectors


def test_merchant_get_for_user_finds_only_the_users_own_merchants():
    member = MerchantMemberFactory(role=MemberRole.VIEWER)
    stranger_merchant = MerchantFactory()

    assert selectors.merchant_get_for_user(user=member.user, merchant_id=member.merchant_id) == member.merchant
    assert selectors.merchant_get_for_user(user=member.user, merchant_id=str(member.merchant_id)) == member.merchant
    for merchant_id in (stranger_merchant.pk, "abc", None):
        with pytest.raises(Merchant.DoesNotExist):
            selectors.merchant_get_for_user(user=member.user, merchant_id=merchant_id)
    assert list(selectors.merchants_for_user(user=member.user)) == [member.merchant]


def test_listing_get_for_merchant_does_not_reach_another_merchants_listing(listing):
    other = ListingFactory()

    assert selectors.listing_get_for_merchant(merchant=listing.merchant, listing_id=listing.pk) == listing
    with pytest.raises(Listing.DoesNotExist):
        selectors.listing_get_for_merchant(merchant=listing.merchant, listing_id=other.pk)
    assert list(selectors.listings_for_merchant(merchant=listing.merchant)) == [listing]


def test_members_for_merchant_lists_owners_first():
    viewer = MerchantMemberFactory(role=MemberRole.VIEWER)
    owner = MerchantMemberFactory(merchant=viewer.merchant, role=MemberRole.OWNER)

    assert list(selectors.members_for_merchant(merchant=viewer.merchant)) == [owner, viewer]
    with pytest.raises(MerchantMember.DoesNotExist):
        selectors.member_get_for_merchant(merchant=MerchantFactory(), member_id=owner.pk)


def test_listings_active_shows_active_listings_of_approved_merchants_in_constant_queries(django_assert_num_queries):
    on_sale = [ListingFactory(), ListingFactory()]
    ListingFactory(status=ListingStatus.PAUSED)
    for status in (MerchantStatus.SUSPENDED, MerchantStatus.SUBMITTED, MerchantStatus.DRAFT):
        ListingFactory(merchant=merchant_in(status))

    with django_assert_num_queries(1):
        found = list(selectors.listings_active())
        names = [listing.merchant.display_name for listing in found]

    assert sorted(listing.pk for listing in found) == sorted(listing.pk for listing in on_sale)
    assert sorted(names) == sorted(listing.merchant.display_name for listing in on_sale)


def test_a_listing_comes_back_on_sale_when_its_merchant_is_reinstated(listing):
    merchant_suspend(actor=None, merchant=listing.merchant, reason="投诉率过高")
    assert list(selectors.listings_active()) == []

    merchant_reinstate(actor=None, merchant=listing.merchant, reason="整改完成")

    assert list(selectors.listings_active()) == [listing]
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.ACTIVE
