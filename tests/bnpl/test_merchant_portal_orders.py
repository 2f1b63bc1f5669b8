"""The merchant portal's orders: the list (filters, search, keyset pages, htmx), the detail, every action
through the same services as the API, and the CSV export through the background task runner."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.models import BillLine, CreditOrder, OrderEvent, Refund
from bnpl.models.charging import ChargeAttempt
from bnpl.models.settlement import Dispute
from merchants.choices import MemberRole, MerchantTaskStatus
from merchants.models import MerchantActivity, MerchantTask
from merchants.task_runner import merchant_task_run
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in, snapshot
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db
ALL_ROLES = list(MemberRole)


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def login(client, merchant, role=MemberRole.OWNER):
    member = MerchantMemberFactory(merchant=merchant, role=role)
    client.force_login(member.user)
    return member


def make_orders(listing, n, status=S.ACTIVE, **extra):
    return [order_in(status, listing=listing, consumer=ConsumerFactory(), **extra) for _ in range(n)]


# --------------------------------------------------------------------------- list


@pytest.mark.parametrize("role", ALL_ROLES)
def test_list_renders_for_every_role_with_masked_phones(client, listing, role):
    consumer = ConsumerFactory(phone="13812345678")
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="T-1")
    login(client, listing.merchant, role)
    body = client.get(reverse("merchant:orders")).content.decode()
    assert "T-1" in body and "138****5678" in body and "13812345678" not in body
    assert reverse("merchant:order_detail", args=[order.pk]) in body
    assert (reverse("merchant:order_export") in body) is (role in {MemberRole.OWNER, MemberRole.OPERATOR})


def test_list_shows_only_the_members_merchant(client, listing):
    other = ListingFactory()
    order_in(S.ACTIVE, listing=other, consumer=ConsumerFactory(), out_order_no="THEIRS-1")
    order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory(), out_order_no="MINE-1")
    login(client, listing.merchant)
    body = client.get(reverse("merchant:orders")).content.decode()
    assert "MINE-1" in body and "THEIRS-1" not in body


def test_filters_and_search(client, listing):
    other_listing = ListingFactory(merchant=listing.merchant, max_amount=D("500.00"))
    a = order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory(phone="13900001111"), out_order_no="AB-100")
    b = due_order(other_listing, ConsumerFactory(phone="13900002222"), amount="80.00", status=S.OVERDUE)
    CreditOrder.objects.filter(pk=b.pk).update(dpd_bucket="M1", dpd=40, out_order_no="CD-200")
    old = order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory(), out_order_no="OLD-1")
    CreditOrder.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    login(client, listing.merchant)
    url = reverse("merchant:orders")

    def numbers(**params):
        body = client.get(url, params).content.decode()
        return {no for no in ("AB-100", "CD-200", "OLD-1") if no in body}

    assert numbers() == {"AB-100", "CD-200", "OLD-1"}
    assert numbers(status="overdue") == {"CD-200"}
    assert numbers(status=["overdue", "active"]) == {"AB-100", "CD-200", "OLD-1"}
    assert numbers(listing=other_listing.pk) == {"CD-200"}
    assert numbers(q="AB-") == {"AB-100"}
    assert numbers(q="2222") == {"CD-200"}  # phone tail
    assert numbers(dpd="M1") == {"CD-200"}
    assert numbers(amount_min="50", amount_max="100") == {"CD-200"}
    since = (timezone.localdate() - timedelta(days=7)).isoformat()
    assert numbers(created_from=since) == {"AB-100", "CD-200"}
    assert numbers(scenario="express_delivery") == set()
    assert numbers(amount_min="not-a-number") == {"AB-100", "CD-200", "OLD-1"}  # a bad field is ignored
    assert a.pk


def test_htmx_request_gets_only_the_table(client, listing):
    make_orders(listing, 2)
    login(client, listing.merchant)
    response = client.get(reverse("merchant:orders"), {"status": "active"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="orders">') and '<nav class="navbar' not in body
    assert 'id="export-query" hx-swap-oob="true"' in body and "status=active" in body


def test_keyset_pages_walk_forward_and_back_without_gaps(client, listing, monkeypatch):
    monkeypatch.setattr("bnpl.merchant_portal.selectors.PAGE_SIZE", 3)
    orders = make_orders(listing, 7)
    base = timezone.now()
    for i, order in enumerate(orders):
        CreditOrder.objects.filter(pk=order.pk).update(created_at=base - timedelta(minutes=i), out_order_no=f"K-{i}")
    login(client, listing.merchant)
    url = reverse("merchant:orders")
    seen = []
    response = client.get(url)
    pages = []
    while True:
        page = response.context["page"]
        pages.append(page)
        seen.extend(o.out_order_no for o in page.rows)
        if not page.next_cursor:
            break
        response = client.get(url, {"after": page.next_cursor})
    assert seen == [f"K-{i}" for i in range(7)]
    assert pages[0].prev_cursor == "" and pages[0].total == 7
    back = client.get(url, {"before": pages[-1].prev_cursor}).context["page"]
    assert [o.out_order_no for o in back.rows] == ["K-3", "K-4", "K-5"]
    by_amount = client.get(url, {"sort": "amount"}).context["page"]
    assert len(by_amount.rows) == 3


def test_list_query_count_does_not_grow_with_rows(client, listing):
    login(client, listing.merchant)
    make_orders(listing, 2)
    url = reverse("merchant:orders")
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    make_orders(listing, 20)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)


# --------------------------------------------------------------------------- detail


@pytest.mark.parametrize("role", ALL_ROLES)
def test_detail_renders_for_every_role_with_role_specific_actions(client, listing, role):
    order = make_orders(listing, 1)[0]
    login(client, listing.merchant, role)
    response = client.get(reverse("merchant:order_detail", args=[order.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert (reverse("merchant:order_complete", args=[order.pk]) in body) is (
        role in {MemberRole.OWNER, MemberRole.OPERATOR}
    )


def test_detail_of_another_merchants_order_is_404(client, listing):
    theirs = make_orders(ListingFactory(), 1)[0]
    login(client, listing.merchant)
    assert client.get(reverse("merchant:order_detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("merchant:order_cancel", args=[theirs.pk])).status_code == 404
    response = client.post(reverse("merchant:order_cancel", args=[theirs.pk]), {"reason": "x"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == S.ACTIVE


def test_detail_shows_history_in_constant_queries(client, listing, consumer):
    login(client, listing.merchant)
    order = charged_order(listing, consumer, amount="30.00")
    url = reverse("merchant:order_detail", args=[order.pk])
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        body = client.get(url).content.decode()
    assert "¥30.00" in body
    for i in range(20):
        OrderEvent.objects.create(
            order=order, actor_kind="system", from_status=S.PAID, to_status=S.PAID, reason=f"n{i}"
        )
        BillLine.objects.create(order=order, position=i + 5, name=f"L{i}", quantity=1, unit_price=0, amount=0)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)


# --------------------------------------------------------------------------- actions


def test_complete_with_bill_lines_end_to_end(client, listing):
    member = login(client, listing.merchant, MemberRole.OPERATOR)
    order = make_orders(listing, 1)[0]
    url = reverse("merchant:order_complete", args=[order.pk])
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "mode": "lines",
            "line0_name": "充电",
            "line0_quantity": "2",
            "line0_unit": "小时",
            "line0_unit_price": "1.50",
            "line1_name": "服务费",
            "line1_unit_price": "0.50",
            "discount0_name": "新客立减",
            "discount0_amount": "1.00",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("merchant:order_detail", args=[order.pk])
    order.refresh_from_db()
    assert order.status == S.COMPLETED and order.amount_due == D("2.50")
    assert [(line.name, line.amount, line.is_discount) for line in order.bill_lines.all()] == [
        ("充电", D("3.00"), False),
        ("服务费", D("0.50"), False),
        ("新客立减", D("1.00"), True),
    ]
    event = order.events.order_by("-id").first()
    assert event.actor == member.user and event.actor_kind == "merchant"
    activity = MerchantActivity.objects.get(merchant=listing.merchant)
    assert (
        activity.action == "order.complete" and activity.user == member.user and order.out_order_no in activity.target
    )


def test_complete_above_the_cap_is_refused_and_changes_nothing(client, listing):
    login(client, listing.merchant)
    order = make_orders(listing, 1)[0]
    before = snapshot(order)
    response = client.post(
        reverse("merchant:order_complete", args=[order.pk]),
        {"mode": "lines", "line0_name": "big", "line0_quantity": "1", "line0_unit_price": "999.00"},
    )
    assert response.status_code == 400
    assert snapshot(order) == before
    assert not MerchantActivity.objects.exists()
    assert response.context["form"].non_field_errors()


def test_action_in_the_wrong_state_says_why_and_changes_nothing(client, listing, consumer):
    login(client, listing.merchant)
    order = charged_order(listing, consumer, amount="20.00")
    before = snapshot(order)
    url = reverse("merchant:order_cancel", args=[order.pk])
    page = client.get(url)
    assert "This order is Paid, so it cannot be cancelled now." in page.content.decode()
    response = client.post(url, {"reason": "customer asked"})
    assert response.status_code == 409
    assert "This order is Paid, so it cannot be cancelled now." in response.content.decode()
    assert snapshot(order) == before and not MerchantActivity.objects.exists()


def test_cancel_needs_a_reason_and_then_cancels(client, listing):
    login(client, listing.merchant)
    order = make_orders(listing, 1)[0]
    url = reverse("merchant:order_cancel", args=[order.pk])
    assert client.post(url, {"reason": ""}).status_code == 400
    order.refresh_from_db()
    assert order.status == S.ACTIVE
    assert client.post(url, {"reason": "用户取消"}).status_code == 302
    order.refresh_from_db()
    assert order.status == S.CANCELLED and order.close_reason == "用户取消"
    assert MerchantActivity.objects.get().action == "order.cancel"


def test_lower_amount_end_to_end(client, listing, consumer):
    fund(consumer)
    login(client, listing.merchant)
    order = due_order(listing, consumer, amount="20.00", due_at=timezone.now() + timedelta(days=1))
    url = reverse("merchant:order_lower", args=[order.pk])
    assert client.post(url, {"amount": "25.00", "reason": "up"}).status_code == 400  # only down
    order.refresh_from_db()
    assert order.amount_due == D("20.00")
    assert client.post(url, {"amount": "12.00", "reason": "优惠"}).status_code == 302
    order.refresh_from_db()
    assert order.amount_due == D("12.00")
    assert MerchantActivity.objects.get().action == "order.lower"


@pytest.mark.parametrize("role", [MemberRole.OWNER, MemberRole.FINANCE])
def test_refund_end_to_end_is_idempotent_per_form(client, listing, consumer, role):
    login(client, listing.merchant, role)
    order = charged_order(listing, consumer, amount="40.00")
    url = reverse("merchant:order_refund", args=[order.pk])
    key = client.get(url).context["form"]["refund_key"].value()
    data = {"amount": "15.00", "reason": "退货", "refund_key": key}
    assert client.post(url, data).status_code == 302
    assert client.post(url, data).status_code == 302  # a double submit refunds once
    order.refresh_from_db()
    assert order.refunded_amount == D("15.00") and order.status == S.PARTIALLY_REFUNDED
    assert Refund.objects.filter(order=order).count() == 1
    too_much = client.post(url, {"amount": "30.00", "reason": "again", "refund_key": "other-key"})
    assert too_much.status_code == 400
    order.refresh_from_db()
    assert order.refunded_amount == D("15.00")


@pytest.mark.parametrize("role", [MemberRole.OPERATOR, MemberRole.VIEWER])
def test_refund_refused_for_roles_without_the_capability(client, listing, consumer, role):
    login(client, listing.merchant, role)
    order = charged_order(listing, consumer, amount="40.00")
    url = reverse("merchant:order_refund", args=[order.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"amount": "1.00", "reason": "x", "refund_key": "k"}).status_code == 403
    assert not Refund.objects.exists()


def test_viewer_and_finance_cannot_manage_orders(client, listing):
    order = make_orders(listing, 1)[0]
    for role in (MemberRole.VIEWER, MemberRole.FINANCE):
        login(client, listing.merchant, role)
        assert client.post(reverse("merchant:order_cancel", args=[order.pk]), {"reason": "x"}).status_code == 403
        assert client.post(reverse("merchant:order_export"), {"query": ""}).status_code == 403
    order.refresh_from_db()
    assert order.status == S.ACTIVE


def test_collect_again_and_mark_paid_elsewhere(client, listing, consumer):
    fund(consumer)
    login(client, listing.merchant)
    order = due_order(listing, consumer, amount="9.00", status=S.COLLECTING)
    CreditOrder.objects.filter(pk=order.pk).update(next_attempt_at=timezone.now() + timedelta(hours=2))
    assert client.post(reverse("merchant:order_collect", args=[order.pk])).status_code == 302
    order.refresh_from_db()
    assert order.next_attempt_at <= timezone.now()
    again = client.post(reverse("merchant:order_collect", args=[order.pk]))  # already due: refused
    assert again.status_code == 400 and "already due" in again.content.decode()
    response = client.post(reverse("merchant:order_paid_elsewhere", args=[order.pk]), {"reason": "现金支付"})
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == S.PAID
    assert list(MerchantActivity.objects.order_by("id").values_list("action", flat=True)) == [
        "order.collect",
        "order.paid_elsewhere",
    ]
    assert not ChargeAttempt.objects.filter(order=order).exists()


# --------------------------------------------------------------------------- export


def test_export_writes_the_filtered_orders_as_csv_with_a_bom(client, listing, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args[1]))
    login(client, listing.merchant, MemberRole.OPERATOR)
    consumer = ConsumerFactory(phone="13712345678")
    order_in(S.ACTIVE, listing=listing, consumer=consumer, out_order_no="EXP-1")
    order_in(S.CANCELLED, listing=listing, consumer=ConsumerFactory(), out_order_no="EXP-2")
    order_in(S.ACTIVE, listing=ListingFactory(), consumer=ConsumerFactory(), out_order_no="EXP-OTHER")
    response = client.post(reverse("merchant:order_export"), {"query": "status=active&after=x"})
    task = MerchantTask.objects.get()
    assert response.status_code == 302 and response["Location"].startswith(reverse("merchant:task", args=[task.pk]))
    assert task.params["query"] == "status=active"
    merchant_task_run(task.pk)  # what the cluster does with the queued id
    task.refresh_from_db()
    assert task.status == MerchantTaskStatus.SUCCEEDED and task.result == {"rows": 1}
    download = client.get(reverse("merchant:task_download", args=[task.pk]))
    raw = b"".join(download.streaming_content)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:2] == ["Order ID", "Merchant order no."]
    assert len(rows) == 2 and rows[1][1] == "EXP-1" and rows[1][5] == "137****5678" and rows[1][7] == "500.00"
    assert MerchantActivity.objects.get().action == "order.export"


def test_export_neutralises_spreadsheet_formulas_in_text_cells(client, listing, settings, tmp_path, monkeypatch):
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)
    login(client, listing.merchant, MemberRole.OPERATOR)
    listing.title = "@SUM(A1:A9)"
    listing.save(update_fields=["title"])
    order_in(S.ACTIVE, listing=listing, consumer=ConsumerFactory(), out_order_no='=HYPERLINK("http://x")')
    client.post(reverse("merchant:order_export"), {"query": ""})
    task = MerchantTask.objects.get()
    merchant_task_run(task.pk)
    raw = b"".join(client.get(reverse("merchant:task_download", args=[task.pk])).streaming_content)
    [_header, row] = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert row[1] == '\'=HYPERLINK("http://x")' and row[3] == "'@SUM(A1:A9)"
    assert row[7] == "500.00"  # amounts are left as figures


def test_dispute_and_refund_show_on_the_detail(client, listing, consumer):
    login(client, listing.merchant, MemberRole.VIEWER)
    order = charged_order(listing, consumer, amount="40.00")
    Dispute.objects.create(
        order=order,
        consumer=consumer,
        merchant=listing.merchant,
        reason="not_received",
        disputed_amount=D("40.00"),
        after_charge=True,
        respond_by=timezone.now() + timedelta(days=3),
    )
    body = client.get(reverse("merchant:order_detail", args=[order.pk])).content.decode()
    assert "¥40.00" in body and "respond by" in body


def test_complete_by_rating_the_reported_usage(client, listing):
    login(client, listing.merchant)
    order = make_orders(listing, 1)[0]
    response = client.post(reverse("merchant:order_complete", args=[order.pk]), {"mode": "usage"})
    assert response.status_code == 302
    order.refresh_from_db()
    # No usage reported: a bill of zero, nothing to charge, so the order is settled at once.
    assert order.amount_due == D("0.00") and order.status == S.PAID
    activity = MerchantActivity.objects.get()
    assert activity.detail["order_id"] == order.pk and not any(key.startswith("line0") for key in activity.detail)


def test_complete_with_a_half_typed_line_keeps_the_input_and_changes_nothing(client, listing):
    login(client, listing.merchant)
    order = make_orders(listing, 1)[0]
    response = client.post(
        reverse("merchant:order_complete", args=[order.pk]), {"mode": "lines", "line0_quantity": "2"}
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "line0_name" in form.errors and form["line0_quantity"].value() == "2"
    order.refresh_from_db()
    assert order.status == S.ACTIVE
