"""The consumers admin: pages render, nothing is editable, and actions go through the services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from consumers.choices import LimitChangeReason
from consumers.models import CreditProfile, LimitChange
from consumers.services import consumer_verify_identity, credit_limit_set, promise_record_add
from tests.consumers.test_identity import make_resident_id
from tests.factories import ConsumerFactory


@pytest.fixture
def verified_consumer(db):
    consumer = ConsumerFactory(phone="13812345678")
    consumer_verify_identity(actor=None, consumer=consumer, real_name="王小明", id_number=make_resident_id(5))
    consumer.refresh_from_db()
    return consumer


@pytest.mark.django_db
def test_consumer_pages_render_masked_and_never_show_the_id_hash(admin_client, verified_consumer):
    changelist = admin_client.get(reverse("admin:consumers_consumer_changelist"))
    change = admin_client.get(reverse("admin:consumers_consumer_change", args=[verified_consumer.pk]))

    assert changelist.status_code == 200
    assert change.status_code == 200
    for page in (changelist.content.decode(), change.content.decode()):
        assert "138****5678" in page
        assert verified_consumer.id_number_masked in page
        assert verified_consumer.id_number_hash not in page
        assert "13812345678" not in page
        assert make_resident_id(5) not in page


@pytest.mark.django_db
def test_consumer_search_by_full_phone_finds_the_consumer(admin_client, verified_consumer):
    ConsumerFactory(phone="13900000000")

    response = admin_client.get(reverse("admin:consumers_consumer_changelist"), {"q": "13812345678"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [verified_consumer]


@pytest.mark.django_db
def test_consumer_admin_cannot_add_change_or_delete(admin_client, verified_consumer):
    url = reverse("admin:consumers_consumer_change", args=[verified_consumer.pk])

    assert admin_client.get(reverse("admin:consumers_consumer_add")).status_code == 403
    assert admin_client.post(url, {"city": "上海"}).status_code == 403
    assert admin_client.get(reverse("admin:consumers_consumer_delete", args=[verified_consumer.pk])).status_code == 403
    verified_consumer.refresh_from_db()
    assert verified_consumer.city == "杭州"


@pytest.mark.django_db
def test_credit_profile_pages_render_money_as_yuan(admin_client, consumer, staff_user):
    credit_limit_set(actor=staff_user, consumer=consumer, amount="1234.5", reason_code="staff", reason="history")

    changelist = admin_client.get(reverse("admin:consumers_creditprofile_changelist"))
    change = admin_client.get(reverse("admin:consumers_creditprofile_change", args=[consumer.credit_profile.pk]))

    assert changelist.status_code == 200
    assert change.status_code == 200
    assert "¥1,234.50" in changelist.content.decode()
    assert "¥1,234.50" in change.content.decode()
    assert "history" in change.content.decode()  # the limit history inline


@pytest.mark.django_db
def test_credit_profile_change_form_cannot_save(admin_client, consumer):
    url = reverse("admin:consumers_creditprofile_change", args=[consumer.credit_profile.pk])

    response = admin_client.post(url, {"credit_limit_amount": "99999.00", "score": "950"})

    assert response.status_code == 403
    profile = CreditProfile.objects.get(consumer=consumer)
    assert (profile.credit_limit_amount, profile.score) == (Decimal("1000.00"), 650)


@pytest.mark.django_db
def test_credit_profile_changelist_query_count_is_constant(admin_client):
    url = reverse("admin:consumers_creditprofile_changelist")
    ConsumerFactory()
    with CaptureQueriesContext(connection) as one_row:
        assert admin_client.get(url).status_code == 200
    for _ in range(4):
        ConsumerFactory()
    with CaptureQueriesContext(connection) as five_rows:
        assert admin_client.get(url).status_code == 200

    assert len(five_rows) == len(one_row)


@pytest.mark.django_db
def test_limit_change_and_promise_record_admins_are_read_only(admin_client, consumer, merchant, staff_user):
    change = credit_limit_set(actor=staff_user, consumer=consumer, amount="1500", reason_code="staff", reason="ok")
    record = promise_record_add(
        consumer=consumer,
        merchant_id=merchant.pk,
        order_id=77,
        outcome="fulfilled",
        amount=Decimal("8.00"),
        recorded_at=timezone.now(),
    )

    for name, pk in (("limitchange", change.pk), ("promiserecord", record.pk)):
        assert admin_client.get(reverse(f"admin:consumers_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:consumers_{name}_change", args=[pk])).status_code == 200
        assert admin_client.get(reverse(f"admin:consumers_{name}_add")).status_code == 403
        assert admin_client.post(reverse(f"admin:consumers_{name}_change", args=[pk]), {}).status_code == 403
        assert admin_client.get(reverse(f"admin:consumers_{name}_delete", args=[pk])).status_code == 403
    assert LimitChange.objects.count() == 1


# --- actions ----------------------------------------------------------------------------------

CHANGELIST = "admin:consumers_creditprofile_changelist"


def _action(admin_client, action: str, profile_ids: list[int], **data):
    return admin_client.post(reverse(CHANGELIST), {"action": action, "_selected_action": profile_ids, **data})


@pytest.mark.django_db
def test_adjust_limit_action_first_shows_the_form(admin_client, consumer):
    response = _action(admin_client, "adjust_limit", [consumer.credit_profile.pk], index=0)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/consumers/adjust_limit.html"
    page = response.content.decode()
    assert "¥1,000.00" in page
    # The page posts back to the same action with the same selection.
    assert f'name="_selected_action" value="{consumer.credit_profile.pk}"' in page
    assert 'name="action" value="adjust_limit"' in page
    assert 'name="apply"' in page
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_adjust_limit_without_a_reason_re_renders_with_an_error_and_changes_nothing(admin_client, consumer):
    response = _action(admin_client, "adjust_limit", [consumer.credit_profile.pk], apply="1", amount="1500", reason="")

    assert response.status_code == 200
    assert response.context["form"].errors["reason"]
    assert LimitChange.objects.count() == 0
    assert CreditProfile.objects.get(consumer=consumer).credit_limit_amount == Decimal("1000.00")


@pytest.mark.django_db
def test_adjust_limit_with_an_invalid_amount_re_renders_and_changes_nothing(admin_client, consumer):
    response = _action(
        admin_client, "adjust_limit", [consumer.credit_profile.pk], apply="1", amount="15.005", reason="why"
    )

    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_adjust_limit_with_a_reason_writes_a_staff_limit_change(admin_client, admin_user, consumer):
    response = _action(
        admin_client,
        "adjust_limit",
        [consumer.credit_profile.pk],
        apply="1",
        amount="1500.00",
        reason="Two years without a missed payment",
    )

    assert response.status_code == 302
    change = LimitChange.objects.get()
    assert (change.before_amount, change.after_amount) == (Decimal("1000.00"), Decimal("1500.00"))
    assert change.reason_code == LimitChangeReason.STAFF
    assert change.reason == "Two years without a missed payment"
    assert change.actor == admin_user
    assert CreditProfile.objects.get(consumer=consumer).credit_limit_amount == Decimal("1500.00")


@pytest.mark.django_db
def test_adjust_limit_refused_by_the_service_shows_the_refusal_on_the_form(admin_client, consumer):
    response = _action(
        admin_client, "adjust_limit", [consumer.credit_profile.pk], apply="1", amount="1000.00", reason="same"
    )

    assert response.status_code == 200
    assert response.context["form"].errors["amount"]
    assert LimitChange.objects.count() == 0


@pytest.mark.django_db
def test_adjust_limit_on_several_profiles_adjusts_each(admin_client):
    first, second = ConsumerFactory(), ConsumerFactory(profile__credit_limit_amount=Decimal("300.00"))
    ids = [first.credit_profile.pk, second.credit_profile.pk]

    response = _action(admin_client, "adjust_limit", ids, apply="1", amount="800", reason="campaign")

    assert response.status_code == 302
    assert sorted((c.before_amount, c.after_amount) for c in LimitChange.objects.all()) == [
        (Decimal("300.00"), Decimal("800.00")),
        (Decimal("1000.00"), Decimal("800.00")),
    ]


@pytest.mark.django_db
def test_pause_action_needs_a_reason_then_pauses(admin_client, consumer):
    pk = consumer.credit_profile.pk

    without = _action(admin_client, "pause", [pk], apply="1", reason="")
    assert without.status_code == 200
    assert without.templates[0].name == "admin/consumers/profile_reason.html"
    assert without.context["form"].errors["reason"]
    assert CreditProfile.objects.get(pk=pk).is_paused is False

    with_reason = _action(admin_client, "pause", [pk], apply="1", reason="Disputed charges under review")
    assert with_reason.status_code == 302
    profile = CreditProfile.objects.get(pk=pk)
    assert (profile.is_paused, profile.paused_reason) == (True, "Disputed charges under review")


@pytest.mark.django_db
def test_pause_action_on_a_paused_profile_shows_the_refusal_and_keeps_the_reason(admin_client, consumer):
    pk = consumer.credit_profile.pk
    _action(admin_client, "pause", [pk], apply="1", reason="first")

    response = _action(admin_client, "pause", [pk], apply="1", reason="second")

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert CreditProfile.objects.get(pk=pk).paused_reason == "first"


@pytest.mark.django_db
def test_unpause_action_unpauses(admin_client, consumer):
    pk = consumer.credit_profile.pk
    _action(admin_client, "pause", [pk], apply="1", reason="overdue")

    response = _action(admin_client, "unpause", [pk], apply="1", reason="paid in branch")

    assert response.status_code == 302
    profile = CreditProfile.objects.get(pk=pk)
    assert (profile.is_paused, profile.paused_reason) == (False, "")


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["77", "not-a-number", "138"])
def test_promise_record_search_by_order_id_or_phone_never_fails(admin_client, consumer, merchant, term):
    promise_record_add(
        consumer=consumer,
        merchant_id=merchant.pk,
        order_id=77,
        outcome="fulfilled",
        amount=Decimal("8.00"),
        recorded_at=timezone.now(),
    )

    response = admin_client.get(reverse("admin:consumers_promiserecord_changelist"), {"q": term})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == (0 if term == "not-a-number" else 1)
