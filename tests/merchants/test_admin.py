"""Tests for the merchants Django admin: pages render, actions and saves go through the services.

``admin_client`` is pytest-django's client logged in as its ``admin_user`` fixture (a superuser).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from merchants.choices import ListingStatus, MemberRole, MerchantCategory, MerchantStatus
from merchants.models import Listing, Merchant, MerchantEvent, MerchantMember
from merchants.pricing import describe, parse_rule
from tests.factories import ListingFactory, MerchantFactory, MerchantMemberFactory, UserFactory, make_uscc

pytestmark = pytest.mark.django_db

CLEAR_ACCOUNT = "6225880123456789"
MASKED_ACCOUNT = "**** **** 6789"
REASON_TEMPLATE = "admin/merchants/reject_reason.html"


def merchant_in(status: str, **extra: Any) -> Merchant:
    if status == MerchantStatus.REJECTED:
        extra.setdefault("rejection_reason", "营业执照不清晰")
    if status in (MerchantStatus.DRAFT, MerchantStatus.SUBMITTED, MerchantStatus.REJECTED):
        extra.setdefault("approved_at", None)
    return MerchantFactory(status=status, settlement_account_number=CLEAR_ACCOUNT, **extra)


def row(instance: Any) -> dict[str, Any]:
    fresh = type(instance).objects.get(pk=instance.pk)
    return {field.attname: getattr(fresh, field.attname) for field in type(instance)._meta.concrete_fields}


def events(merchant: Merchant) -> list[tuple[int | None, str, str, str]]:
    return list(
        MerchantEvent.objects.filter(merchant=merchant)
        .order_by("created_at", "id")
        .values_list("actor_id", "from_status", "to_status", "reason")
    )


def message_texts(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def change_form_data(response: Any) -> dict[str, Any]:
    """What a browser would post back from a rendered admin change form, unchanged."""
    data: dict[str, Any] = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        data[name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
    return data


def changelist_url(model: str) -> str:
    return reverse(f"admin:merchants_{model}_changelist")


def change_url(instance: Any) -> str:
    return reverse(f"admin:merchants_{type(instance)._meta.model_name}_change", args=[instance.pk])


# --------------------------------------------------------------------------- merchant pages


def test_merchant_changelist_renders_without_the_clear_account_number(admin_client):
    merchants = [merchant_in(MerchantStatus.SUBMITTED), merchant_in(MerchantStatus.APPROVED)]

    response = admin_client.get(changelist_url("merchant"))

    assert response.status_code == 200
    content = response.content.decode()
    for merchant in merchants:
        assert merchant.display_name in content
        assert merchant.uscc in content
    assert CLEAR_ACCOUNT not in content
    assert str(MerchantCategory.EBIKE_CHARGING.label) in content


def test_merchant_changelist_filters_by_status_and_category_and_searches_by_uscc(admin_client):
    charging = merchant_in(MerchantStatus.SUBMITTED, categories=[MerchantCategory.EBIKE_CHARGING])
    express = merchant_in(MerchantStatus.SUBMITTED, categories=[MerchantCategory.EXPRESS_DELIVERY])
    approved = merchant_in(MerchantStatus.APPROVED, categories=[MerchantCategory.EXPRESS_DELIVERY])

    by_filter = admin_client.get(changelist_url("merchant"), {"status": "submitted", "category": "express_delivery"})
    by_search = admin_client.get(changelist_url("merchant"), {"q": charging.uscc})

    assert list(by_filter.context["cl"].result_list) == [express]
    assert list(by_search.context["cl"].result_list) == [charging]
    assert approved.pk not in [merchant.pk for merchant in by_filter.context["cl"].result_list]


@pytest.mark.parametrize("status", [MerchantStatus.DRAFT, MerchantStatus.APPROVED])
def test_merchant_change_page_shows_the_account_number_masked_and_the_timeline(admin_client, status):
    merchant = merchant_in(status)
    MerchantEvent.objects.create(merchant=merchant, from_status="", to_status=MerchantStatus.DRAFT, reason="首次申请")
    MerchantMemberFactory(merchant=merchant, user=UserFactory(username="owner-li"))

    response = admin_client.get(change_url(merchant))

    assert response.status_code == 200
    content = response.content.decode()
    assert MASKED_ACCOUNT in content
    assert CLEAR_ACCOUNT not in content
    assert "首次申请" in content
    assert "owner-li" in content
    assert "status" not in response.context["adminform"].form.fields
    assert "settlement_account_number" not in response.context["adminform"].form.fields


def test_merchant_add_page_renders(admin_client):
    response = admin_client.get(reverse("admin:merchants_merchant_add"))

    assert response.status_code == 200
    assert "settlement_account_number" in response.context["adminform"].form.fields
    assert "status" not in response.context["adminform"].form.fields


def test_admin_add_creates_a_draft_through_the_service(admin_client, admin_user):
    uscc = make_uscc(800001)
    data = {
        "legal_name": "宁波快递有限公司",
        "display_name": "宁波快递",
        "uscc": uscc.lower(),
        "legal_representative": "",
        "city": "宁波",
        "categories": [MerchantCategory.EXPRESS_DELIVERY],
        "contact_name": "赵六",
        "contact_phone": "+86 137 0000 1111",
        "contact_email": "",
        "settlement_bank_name": "宁波银行",
        "settlement_account_name": "宁波快递有限公司",
        "settlement_account_number": "6222 0000 1111 2222",
        "fee_rate": "0.0050",
    }

    response = admin_client.post(reverse("admin:merchants_merchant_add"), data)

    assert response.status_code == 302
    merchant = Merchant.objects.get()
    assert (merchant.status, merchant.uscc, merchant.contact_phone, merchant.settlement_account_number) == (
        MerchantStatus.DRAFT,
        uscc,
        "13700001111",
        "6222000011112222",
    )
    assert merchant.fee_rate == Decimal("0.0050")
    assert events(merchant) == [(admin_user.pk, "", MerchantStatus.DRAFT, "")]
    assert MerchantMember.objects.count() == 0


def test_change_form_edits_a_draft_through_the_service_and_ignores_a_posted_status(admin_client):
    merchant = merchant_in(MerchantStatus.DRAFT, submitted_at=None)
    data = change_form_data(admin_client.get(change_url(merchant)))
    data.update(contact_phone="+86 136-1234-5678", city="温州", status=MerchantStatus.APPROVED)

    response = admin_client.post(change_url(merchant), data)

    assert response.status_code == 302
    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.contact_phone, stored.city, stored.status) == ("13612345678", "温州", MerchantStatus.DRAFT)
    assert stored.settlement_account_number == CLEAR_ACCOUNT
    assert events(stored) == []


def test_change_form_shows_a_field_error_and_changes_nothing(admin_client):
    merchant = merchant_in(MerchantStatus.DRAFT, submitted_at=None)
    before = row(merchant)
    data = change_form_data(admin_client.get(change_url(merchant)))
    data.update(contact_phone="12345", city="温州")

    response = admin_client.post(change_url(merchant), data)

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["contact_phone"]
    assert row(merchant) == before


def test_change_form_of_an_approved_merchant_changes_only_the_fee_rate(admin_client, admin_user):
    merchant = merchant_in(MerchantStatus.APPROVED, fee_rate=Decimal("0.0060"))
    before = row(merchant)
    data = change_form_data(admin_client.get(change_url(merchant)))
    data.update(fee_rate="0.0040", legal_name="改名公司")

    response = admin_client.post(change_url(merchant), data)

    assert response.status_code == 302
    after = row(merchant)
    assert after["fee_rate"] == Decimal("0.0040")
    assert after["legal_name"] == before["legal_name"]
    assert after["status"] == MerchantStatus.APPROVED
    assert events(merchant) == [
        (admin_user.pk, MerchantStatus.APPROVED, MerchantStatus.APPROVED, "Fee rate changed from 0.0060 to 0.0040.")
    ]


def test_merchants_cannot_be_deleted_in_the_admin(admin_client):
    merchant = merchant_in(MerchantStatus.DRAFT)

    response = admin_client.post(reverse("admin:merchants_merchant_delete", args=[merchant.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert Merchant.objects.filter(pk=merchant.pk).exists()


# --------------------------------------------------------------------------- merchant actions


def post_action(client: Any, action: str, merchants: list[Merchant], **extra: Any) -> Any:
    data = {"action": action, "_selected_action": [merchant.pk for merchant in merchants], "index": 0, **extra}
    return client.post(changelist_url("merchant"), data)


def post_reason(client: Any, action: str, merchants: list[Merchant], reason: str) -> Any:
    """The intermediate page posting back (no ``index``, like Django's own confirmation pages)."""
    data = {
        "action": action,
        "_selected_action": [merchant.pk for merchant in merchants],
        "apply": "1",
        "reason": reason,
    }
    return client.post(changelist_url("merchant"), data)


def test_approve_action_approves_and_writes_an_event_naming_the_staff_member(admin_client, admin_user):
    merchant = merchant_in(MerchantStatus.SUBMITTED)

    response = post_action(admin_client, "approve_selected", [merchant])

    assert response.status_code == 302
    stored = Merchant.objects.get(pk=merchant.pk)
    assert stored.status == MerchantStatus.APPROVED
    assert stored.approved_at is not None
    assert events(merchant) == [(admin_user.pk, MerchantStatus.SUBMITTED, MerchantStatus.APPROVED, "")]
    assert message_texts(response) == [("success", f"Approved: {merchant}.")]


def test_approve_action_reports_each_refusal_and_leaves_that_merchant_unchanged(admin_client):
    submitted = merchant_in(MerchantStatus.SUBMITTED)
    draft = merchant_in(MerchantStatus.DRAFT)
    before = row(draft)

    response = post_action(admin_client, "approve_selected", [submitted, draft])

    assert Merchant.objects.get(pk=submitted.pk).status == MerchantStatus.APPROVED
    assert row(draft) == before
    assert events(draft) == []
    reported = message_texts(response)
    assert [level for level, _text in reported] == ["error", "success"]
    assert "(draft)" in reported[0][1]
    assert reported[1][1] == f"Approved: {submitted}."


def test_reject_action_first_asks_for_a_reason_on_an_intermediate_page(admin_client):
    merchant = merchant_in(MerchantStatus.SUBMITTED)
    before = row(merchant)

    response = post_action(admin_client, "reject_selected", [merchant])

    assert response.status_code == 200
    assert REASON_TEMPLATE in [template.name for template in response.templates]
    content = response.content.decode()
    assert "csrfmiddlewaretoken" in content
    assert 'name="action" value="reject_selected"' in content
    assert f'name="_selected_action" value="{merchant.pk}"' in content
    assert response.context["form"].is_bound is False
    assert row(merchant) == before
    assert events(merchant) == []


def test_reject_action_without_a_reason_asks_again_and_changes_nothing(admin_client):
    merchant = merchant_in(MerchantStatus.SUBMITTED)
    before = row(merchant)

    response = post_reason(admin_client, "reject_selected", [merchant], reason="   ")

    assert response.status_code == 200
    assert REASON_TEMPLATE in [template.name for template in response.templates]
    assert list(response.context["form"].errors) == ["reason"]
    assert row(merchant) == before
    assert events(merchant) == []


def test_reject_action_with_a_reason_rejects_and_stores_it(admin_client, admin_user):
    merchant = merchant_in(MerchantStatus.SUBMITTED)

    response = post_reason(admin_client, "reject_selected", [merchant], reason="营业执照已过期")

    assert response.status_code == 302
    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.status, stored.rejection_reason) == (MerchantStatus.REJECTED, "营业执照已过期")
    assert events(merchant) == [(admin_user.pk, MerchantStatus.SUBMITTED, MerchantStatus.REJECTED, "营业执照已过期")]
    assert message_texts(response) == [("success", f"Rejected: {merchant}.")]


def test_suspend_then_reinstate_actions_take_a_reason_each(admin_client, admin_user):
    merchant = merchant_in(MerchantStatus.APPROVED)

    suspended = post_reason(admin_client, "suspend_selected", [merchant], reason="投诉率过高")
    reinstated = post_reason(admin_client, "reinstate_selected", [merchant], reason="整改完成")

    assert (suspended.status_code, reinstated.status_code) == (302, 302)
    assert Merchant.objects.get(pk=merchant.pk).status == MerchantStatus.APPROVED
    assert events(merchant) == [
        (admin_user.pk, MerchantStatus.APPROVED, MerchantStatus.SUSPENDED, "投诉率过高"),
        (admin_user.pk, MerchantStatus.SUSPENDED, MerchantStatus.APPROVED, "整改完成"),
    ]


def test_suspend_action_on_a_merchant_under_review_is_refused_and_reported(admin_client):
    merchant = merchant_in(MerchantStatus.SUBMITTED)
    before = row(merchant)

    response = post_reason(admin_client, "suspend_selected", [merchant], reason="投诉率过高")

    assert response.status_code == 302
    assert row(merchant) == before
    assert events(merchant) == []
    [(level, text)] = message_texts(response)
    assert level == "error"
    assert "(submitted)" in text


# --------------------------------------------------------------------------- events, listings, members


def test_event_admin_is_read_only(admin_client):
    merchant = merchant_in(MerchantStatus.SUBMITTED)
    event = MerchantEvent.objects.create(merchant=merchant, from_status="draft", to_status="submitted")

    listing_page = admin_client.get(changelist_url("merchantevent"))
    view_page = admin_client.get(change_url(event))
    add_page = admin_client.get(reverse("admin:merchants_merchantevent_add"))
    edit = admin_client.post(change_url(event), {"reason": "篡改", "to_status": "approved"})
    delete = admin_client.post(reverse("admin:merchants_merchantevent_delete", args=[event.pk]), {"post": "yes"})

    assert (listing_page.status_code, view_page.status_code) == (200, 200)
    assert (add_page.status_code, edit.status_code, delete.status_code) == (403, 403, 403)
    assert list(MerchantEvent.objects.values_list("to_status", "reason")) == [("submitted", "")]


def test_listing_pages_render_with_the_pricing_rule(admin_client, listing):
    changelist = admin_client.get(changelist_url("listing"))
    page = admin_client.get(change_url(listing))

    assert changelist.status_code == 200
    assert listing.title in changelist.content.decode()
    assert page.status_code == 200
    content = page.content.decode()
    assert describe(parse_rule(listing.pricing_rule), "en") in content
    assert "&quot;cap_per_24h&quot;: &quot;10.00&quot;" in content


def test_listing_pause_and_resume_actions_go_through_the_services(admin_client, listing):
    paused = admin_client.post(
        changelist_url("listing"), {"action": "pause_selected", "_selected_action": [listing.pk], "index": 0}
    )
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.PAUSED

    resumed = admin_client.post(
        changelist_url("listing"), {"action": "resume_selected", "_selected_action": [listing.pk], "index": 0}
    )

    assert (paused.status_code, resumed.status_code) == (302, 302)
    assert Listing.objects.get(pk=listing.pk).status == ListingStatus.ACTIVE


def test_listing_resume_action_is_refused_for_a_suspended_merchant(admin_client):
    listing = ListingFactory(merchant=merchant_in(MerchantStatus.SUSPENDED), status=ListingStatus.PAUSED)
    before = row(listing)

    response = admin_client.post(
        changelist_url("listing"), {"action": "resume_selected", "_selected_action": [listing.pk], "index": 0}
    )

    assert row(listing) == before
    [(level, text)] = message_texts(response)
    assert level == "error"
    assert "(suspended)" in text


def test_member_admin_adds_a_member_through_the_service(admin_client):
    merchant = merchant_in(MerchantStatus.APPROVED)
    user = UserFactory()

    response = admin_client.post(
        reverse("admin:merchants_merchantmember_add"),
        {"merchant": merchant.pk, "user": user.pk, "role": MemberRole.OPERATOR},
    )

    assert response.status_code == 302
    assert list(MerchantMember.objects.values_list("merchant_id", "user_id", "role")) == [
        (merchant.pk, user.pk, MemberRole.OPERATOR)
    ]
    assert admin_client.get(changelist_url("merchantmember")).status_code == 200


def test_member_admin_refuses_demoting_the_last_owner_on_the_form(admin_client):
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    before = row(owner)
    data = change_form_data(admin_client.get(change_url(owner)))
    data["role"] = MemberRole.VIEWER

    response = admin_client.post(change_url(owner), data)

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["role"]
    assert row(owner) == before


def test_member_admin_protects_the_last_owner_from_removal(admin_client):
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    viewer = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)

    removed = admin_client.post(
        changelist_url("merchantmember"),
        {"action": "remove_selected", "_selected_action": [owner.pk, viewer.pk], "index": 0},
    )
    delete_page = admin_client.get(reverse("admin:merchants_merchantmember_delete", args=[owner.pk]))

    assert list(MerchantMember.objects.values_list("pk", flat=True)) == [owner.pk]
    assert [level for level, _text in message_texts(removed)] == ["error", "success"]
    assert delete_page.status_code == 403


@pytest.mark.parametrize("model", ["merchant", "listing", "merchantmember", "merchantevent"])
def test_changelists_run_the_same_number_of_queries_for_one_row_or_many(admin_client, model):
    def make_rows(count: int) -> None:
        for _ in range(count):
            member = MerchantMemberFactory(merchant=merchant_in(MerchantStatus.SUBMITTED))
            ListingFactory(merchant=member.merchant)
            MerchantEvent.objects.create(merchant=member.merchant, actor=member.user, from_status="", to_status="draft")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(changelist_url(model)).status_code == 200
        return len(captured)

    make_rows(1)
    admin_client.get(changelist_url(model))  # warm the session and content-type caches
    one = queries()
    make_rows(4)

    assert queries() == one
