"""Settlements in the merchant portal: roles, tenancy, figures, drill-down, statement downloads, query counts."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from bnpl.choices import ActorKind
from bnpl.models import Payout, SettlementBatch
from bnpl.refunds import credit_order_refund
from bnpl.settlement import settle_merchants, statement_csv
from merchants.choices import MemberRole
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

pytestmark = pytest.mark.django_db
D = Decimal


def login(client, merchant, role=MemberRole.FINANCE):
    member = MerchantMemberFactory(merchant=merchant, role=role)
    client.force_login(member.user)
    return member


@pytest.fixture
def batch(merchant):
    """A real batch: two charged orders, one partly refunded, settled for today."""
    listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
    consumer = ConsumerFactory()
    first = charged_order(listing, consumer, amount="100.00")
    charged_order(listing, consumer, amount="50.00")
    credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=first, amount="40.00", reason="return", idempotency_key="r1"
    )
    [batch_id] = settle_merchants(business_date=timezone.localdate())
    return SettlementBatch.objects.get(pk=batch_id)


def fake_batches(merchant, count: int, start: date) -> None:
    """Batches with payouts built directly (for list rendering only; the figures satisfy the net identity)."""
    for n in range(count):
        made = SettlementBatch.objects.create(
            merchant=merchant,
            business_date=start - timedelta(days=n),
            cutoff_at=timezone.now(),
            gross_amount=D("10.00"),
            fee_amount=D("0.06"),
            net_amount=D("9.94"),
            item_count=0,
        )
        Payout.objects.create(batch=made, merchant=merchant, amount=D("9.94"))


@pytest.mark.parametrize("role", [MemberRole.OWNER, MemberRole.FINANCE, MemberRole.VIEWER])
def test_pages_render_for_money_roles(client, merchant, batch, role):
    login(client, merchant, role)
    page = client.get(reverse("merchant:settlements"))
    assert page.status_code == 200
    text = page.content.decode()
    for figure in ("¥150.00", "¥0.90", "¥40.00", "¥109.10"):
        assert figure in text
    assert "Pending" in text
    detail = client.get(reverse("merchant:settlement", args=[batch.pk]))
    assert detail.status_code == 200


def test_operator_gets_403_everywhere(client, merchant, batch):
    login(client, merchant, MemberRole.OPERATOR)
    assert client.get(reverse("merchant:settlements")).status_code == 403
    assert client.get(reverse("merchant:settlement", args=[batch.pk])).status_code == 403
    assert client.get(reverse("merchant:settlement_statement", args=[batch.pk, "csv"])).status_code == 403


def test_another_merchants_batch_is_404(client, batch):
    login(client, MerchantFactory(), MemberRole.OWNER)
    assert client.get(reverse("merchant:settlement", args=[batch.pk])).status_code == 404
    assert client.get(reverse("merchant:settlement_statement", args=[batch.pk, "csv"])).status_code == 404
    assert client.get(reverse("merchant:settlement_statement", args=[batch.pk, "xlsx"])).status_code == 404
    assert batch.merchant.display_name not in client.get(reverse("merchant:settlements")).content.decode()


def test_drill_down_lists_the_batch_lines_with_their_orders(client, merchant, batch):
    login(client, merchant)
    response = client.get(reverse("merchant:settlement", args=[batch.pk]))
    items = list(response.context["page"].object_list)
    assert len(items) == batch.item_count == 5
    text = response.content.decode()
    for item in items:
        assert item.order.out_order_no in text
    assert response.context["batch"].net_amount == D("109.10")
    refunds = client.get(reverse("merchant:settlement", args=[batch.pk]), {"kind": "refund"})
    assert [item.amount for item in refunds.context["page"].object_list] == [D("-40.00")]


def test_csv_statement_download_is_the_statement_with_a_bom(client, merchant, batch):
    login(client, merchant, MemberRole.VIEWER)
    response = client.get(reverse("merchant:settlement_statement", args=[batch.pk, "csv"]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"statement-{merchant.pk}-" in response["Content-Disposition"]
    assert response.content == statement_csv(batch)
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[-1][3:] == ["Total", "150.00", "0.90", "40.00", "0.00", "0.00", "109.10"]


def test_xlsx_statement_download_has_the_same_total(client, merchant, batch):
    login(client, merchant)
    response = client.get(reverse("merchant:settlement_statement", args=[batch.pk, "xlsx"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(response.content)).active
    last = [cell.value for cell in list(sheet.iter_rows())[-1]]
    assert last[3] == "Total"
    assert D(str(last[-1])).quantize(D("0.01")) == D("109.10")


def test_unknown_statement_format_is_404(client, merchant, batch):
    login(client, merchant)
    assert client.get(reverse("merchant:settlement_statement", args=[batch.pk, "pdf"])).status_code == 404


def test_list_query_count_is_constant(client, merchant):
    login(client, merchant)
    fake_batches(merchant, 2, timezone.localdate())
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("merchant:settlements"))
    fake_batches(merchant, 18, timezone.localdate() - timedelta(days=10))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("merchant:settlements"))
    assert len(response.context["page"].object_list) == 20
    assert len(many) == len(few)


def test_detail_query_count_is_constant_in_lines(client, merchant, batch):
    login(client, merchant)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("merchant:settlement", args=[batch.pk]))
    listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
    consumer = ConsumerFactory()
    for _ in range(8):
        charged_order(listing, consumer, amount="10.00")
    [bigger] = settle_merchants(business_date=timezone.localdate() + timedelta(days=1))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("merchant:settlement", args=[bigger]))
    assert len(response.context["page"].object_list) == 16
    assert len(many) == len(few)
