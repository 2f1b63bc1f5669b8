"""The audit trail (bnpl/models/audit.py): who changed money, limits, merchants and disputes, and how."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pghistory.models import MiddlewareEvents

from bnpl.audit_middleware import AuditContextMiddleware, redact_path
from bnpl.choices import OrderStatus
from bnpl.models import CreditOrder, CreditOrderAudit, CreditProfileAudit, MerchantAudit
from consumers.models import CreditProfile
from merchants.models import Merchant
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db


def _diffs(obj) -> list[dict]:
    """Update events of ``obj``, oldest first, as {field: [before, after]} (pghistory's pgh_diff)."""
    events = MiddlewareEvents.objects.tracks(obj).filter(pgh_label="update").order_by("pgh_created_at", "pgh_id")
    # The database renders the rows as JSON, so amounts come back as JSON numbers: compare them as Decimals.
    return [
        {
            field: [Decimal(str(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in pair]
            for field, pair in event.pgh_diff.items()
        }
        for event in events
    ]


def test_staff_change_through_the_admin_is_recorded_with_the_user_and_before_after(client):
    staff = UserFactory(username="risk-officer", is_staff=True, is_superuser=True)
    consumer = ConsumerFactory()
    profile = consumer.credit_profile
    assert profile.is_paused is False
    client.force_login(staff)

    response = client.post(
        reverse("admin:consumers_creditprofile_changelist"),
        {"action": "pause", "_selected_action": [profile.pk], "apply": "1", "reason": "Suspected fraud"},
    )
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.is_paused is True

    event = MiddlewareEvents.objects.tracks(profile).filter(pgh_label="update").get()
    assert event.pgh_diff["is_paused"] == [False, True]
    assert event.pgh_diff["paused_reason"] == ["", "Suspected fraud"]
    assert event.pgh_context["user"] == staff.pk
    assert event.user == staff
    assert event.url == reverse("admin:consumers_creditprofile_changelist")
    assert event.pgh_created_at is not None


def test_queryset_update_is_recorded_per_row():
    merchants = [MerchantFactory(fee_rate=Decimal("0.0060")) for _ in range(2)]
    Merchant.objects.filter(pk__in=[m.pk for m in merchants]).update(fee_rate=Decimal("0.0080"))
    for merchant in merchants:
        assert _diffs(merchant) == [{"fee_rate": [Decimal("0.0060"), Decimal("0.0080")]}]


def test_raw_sql_update_is_recorded():
    consumer = ConsumerFactory()
    profile = consumer.credit_profile
    before = profile.credit_limit_amount
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {CreditProfile._meta.db_table} SET credit_limit_amount = %s WHERE id = %s",
            [Decimal("4321.00"), profile.pk],
        )
    rows = CreditProfileAudit.objects.filter(pgh_obj_id=profile.pk, pgh_label="update")
    assert [r.credit_limit_amount for r in rows] == [Decimal("4321.00")]
    assert _diffs(profile) == [{"credit_limit_amount": [before, Decimal("4321.00")]}]


def test_changes_to_untracked_fields_write_nothing():
    merchant = MerchantFactory()
    Merchant.objects.filter(pk=merchant.pk).update(contact_name="Someone else")
    consumer = ConsumerFactory()
    CreditProfile.objects.filter(pk=consumer.credit_profile.pk).update(open_exposure_amount=Decimal("10.00"))
    assert MerchantAudit.objects.filter(pgh_obj_id=merchant.pk, pgh_label="update").count() == 0
    assert CreditProfileAudit.objects.filter(pgh_obj_id=consumer.credit_profile.pk, pgh_label="update").count() == 0


def test_the_trail_is_append_only():
    merchant = MerchantFactory()
    row = MerchantAudit.objects.get(pgh_obj_id=merchant.pk, pgh_label="insert")
    with pytest.raises(DatabaseError), transaction.atomic():
        MerchantAudit.objects.filter(pk=row.pk).update(fee_rate=Decimal("0"))
    with pytest.raises(DatabaseError), transaction.atomic():
        MerchantAudit.objects.filter(pk=row.pk).delete()
    assert MerchantAudit.objects.filter(pk=row.pk).exists()


def test_order_money_changes_are_recorded_and_bookkeeping_is_not(listing):
    order = order_in(OrderStatus.COMPLETED, listing=listing, consumer=ConsumerFactory())
    CreditOrder.objects.filter(pk=order.pk).update(charge_attempt_count=3)  # the charge run's counters
    CreditOrder.objects.filter(pk=order.pk).update(amount_due=Decimal("12.34"), status=OrderStatus.WRITTEN_OFF)
    assert _diffs(order) == [
        {"amount_due": [Decimal("5.00"), Decimal("12.34")], "status": [OrderStatus.COMPLETED, OrderStatus.WRITTEN_OFF]}
    ]
    assert CreditOrderAudit.objects.filter(pgh_obj_id=order.pk).count() == 2  # insert + the one update


def test_admin_shows_the_trail_read_only(client):
    staff = UserFactory(username="auditor", is_staff=True, is_superuser=True)
    merchant = MerchantFactory()
    Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0100"))
    client.force_login(staff)
    url = reverse("admin:pghistory_middlewareevents_changelist")
    response = client.get(url)
    assert response.status_code == 200
    assert b"fee_rate" in response.content
    listing = client.get(reverse("admin:bnpl_merchantaudit_changelist"))
    assert listing.status_code == 200 and b"0.0100" in listing.content
    assert client.get(reverse("admin:bnpl_merchantaudit_add")).status_code == 403


def test_tokens_in_the_path_are_not_stored_with_the_context(rf):
    merchant = MerchantFactory(fee_rate=Decimal("0.0060"))
    staff = UserFactory(is_staff=True)
    token = "Xk3_9aZbQ-1mN0pLr7sT2uVwY4abc"

    def view(request):
        Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0070"))
        return HttpResponse("ok")

    request = rf.post(f"/pay/confirm/{token}")
    request.user = staff
    AuditContextMiddleware(view)(request)

    event = MiddlewareEvents.objects.tracks(merchant).filter(pgh_label="update").get()
    assert event.url == "/pay/confirm/…"
    assert event.user == staff
    assert redact_path("/admin/merchants/merchant/12/change/") == "/admin/merchants/merchant/12/change/"


def _set_config_statements(queries) -> int:
    return sum("pghistory.context_id" in q["sql"] for q in queries.captured_queries)


def test_the_context_is_set_once_per_transaction_and_every_write_in_it_carries_it(rf):
    first, second = MerchantFactory(fee_rate=Decimal("0.0060")), MerchantFactory(fee_rate=Decimal("0.0060"))
    staff = UserFactory(is_staff=True)

    def view(request):
        with transaction.atomic():
            Merchant.objects.filter(pk=first.pk).update(fee_rate=Decimal("0.0070"))
            Merchant.objects.filter(pk=second.pk).update(fee_rate=Decimal("0.0070"))
            Merchant.objects.filter(pk=first.pk).update(fee_rate=Decimal("0.0080"))
        return HttpResponse("ok")

    request = rf.post("/admin/merchants/")
    request.user = staff
    with CaptureQueriesContext(connection) as queries:
        AuditContextMiddleware(view)(request)

    assert _set_config_statements(queries) == 1
    events = [
        *MiddlewareEvents.objects.tracks(first).filter(pgh_label="update"),
        *MiddlewareEvents.objects.tracks(second).filter(pgh_label="update"),
    ]
    assert len(events) == 3
    assert {(event.user, event.url) for event in events} == {(staff, "/admin/merchants/")}


def test_a_write_after_a_rolled_back_savepoint_carries_the_current_context(rf):
    import pghistory

    merchant, other = MerchantFactory(fee_rate=Decimal("0.0060")), MerchantFactory(fee_rate=Decimal("0.0060"))
    staff = UserFactory(is_staff=True)

    def view(request):
        with transaction.atomic():
            Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0070"))  # context set, no user
            try:
                with transaction.atomic():
                    # The new metadata is set inside this savepoint …
                    pghistory.context(user=staff.pk)
                    Merchant.objects.filter(pk=other.pk).update(fee_rate=Decimal("0.0090"))
                    raise RuntimeError("undo")
            except RuntimeError:
                pass  # … and undone with it: the next write must set it again
            Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0080"))
        return HttpResponse("ok")

    AuditContextMiddleware(view)(rf.post("/merchant/settings/"))

    events = MiddlewareEvents.objects.tracks(merchant).filter(pgh_label="update")
    assert [(event.user, event.url) for event in events] == [(staff, "/merchant/settings/")] * 2
    assert not MiddlewareEvents.objects.tracks(other).filter(pgh_label="update").exists()


def test_metadata_added_during_the_transaction_reaches_the_later_writes(rf):
    import pghistory

    merchant = MerchantFactory(fee_rate=Decimal("0.0060"))
    staff = UserFactory(is_staff=True)

    def view(request):
        with transaction.atomic():
            Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0070"))
            pghistory.context(user=staff.pk)  # as DRF setting request.user after the middleware ran
            Merchant.objects.filter(pk=merchant.pk).update(fee_rate=Decimal("0.0080"))
        return HttpResponse("ok")

    AuditContextMiddleware(view)(rf.post("/api/v1/listings/1"))

    events = MiddlewareEvents.objects.tracks(merchant).filter(pgh_label="update").order_by("pgh_id")
    # One context per request: its metadata is the latest the request set, for every row it covers.
    assert [event.pgh_diff["fee_rate"][1] for event in events] == [0.007, 0.008]
    assert {event.user for event in events} == {staff}
