"""The settlement statement (对账单) as XLSX: the CSV's very rows, a header block, number formats, Chinese text."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone, translation
from openpyxl import load_workbook

from bnpl.choices import ActorKind
from bnpl.disputes import dispute_open
from bnpl.models import CreditOrder, SettlementBatch
from bnpl.refunds import credit_order_refund
from bnpl.settlement import (
    XLSX_CONTENT_TYPE,
    settle_merchants,
    settlement_statement_xlsx,
    statement_csv,
    statement_file,
    statement_header,
    statement_rows,
)
from bnpl.spreadsheets import safe_text_cell
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

D = Decimal
AMOUNT_COLUMNS = slice(4, 10)  # gross, fee, refund, adjustment, held, net


@pytest.fixture
def batch(db) -> SettlementBatch:
    """Three orders (one partly refunded, one disputed after the charge) settled into one batch."""
    merchant = MerchantFactory(display_name="杭州小电单车", legal_name="杭州小电科技有限公司")
    listing = ListingFactory(merchant=merchant, max_amount=D("500.00"))
    consumer = ConsumerFactory()
    a = charged_order(listing, consumer, amount="100.00")
    charged_order(listing, ConsumerFactory(), amount="250.50")
    c = charged_order(listing, ConsumerFactory(), amount="30.00")
    credit_order_refund(
        actor=None, actor_kind=ActorKind.MERCHANT, order=a, amount="40.00", reason="退货", idempotency_key="k"
    )
    dispute_open(actor=None, consumer=c.consumer, order=c, reason="faulty", description="坏了", amount="12.00")
    [batch_id] = settle_merchants(business_date=timezone.localdate())
    return SettlementBatch.objects.get(pk=batch_id)


def table(data: bytes) -> tuple[dict[str, object], list[str], list[list[object]], list[object], object]:
    """(header block, table header, lines, total line, sheet) of a statement workbook."""
    sheet = load_workbook(io.BytesIO(data)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    start = next(i for i, row in enumerate(rows) if row[:4] == statement_header()[:4])
    block = {row[0]: row[1] for row in rows[1 : start - 1] if row[0]}
    body = [row for row in rows[start + 1 :] if any(v is not None for v in row)]
    return block, rows[start], body[:-1], body[-1], sheet


def test_xlsx_lines_are_the_csv_lines_and_sums_equal_the_batch(batch):
    data = settlement_statement_xlsx(batch)
    block, header, lines, total, _sheet = table(data)

    assert header == statement_header()
    assert len(lines) == batch.item_count == 8  # 3 completions, 3 fees, 1 refund, 1 hold
    columns = [
        [D(str(v)).quantize(D("0.01")) for v in column]
        for column in zip(*(r[AMOUNT_COLUMNS] for r in lines), strict=True)
    ]
    sums = [sum(column, D(0)) for column in columns]
    expected = [
        batch.gross_amount,
        batch.fee_amount,
        batch.refund_amount,
        batch.adjustment_amount,
        batch.held_amount - batch.released_amount,
        batch.net_amount,
    ]
    assert sums == expected == [D("380.50"), D("2.28"), D("40.00"), D("0.00"), D("12.00"), D("326.22")]
    assert [D(str(v)).quantize(D("0.01")) for v in total[AMOUNT_COLUMNS]] == expected
    assert total[3] == "Total"

    # Exactly the CSV's rows: same order, same text once formatted like the CSV.
    csv_rows = list(csv.reader(io.StringIO(statement_csv(batch).decode("utf-8-sig"))))[1:]
    assert csv_rows == statement_rows(batch)
    as_text = [
        [
            "" if r[0] is None else str(r[0]),
            r[1] or "",
            r[2].strftime("%Y-%m-%d %H:%M") if isinstance(r[2], datetime) else "",
            r[3],
            *(f"{D(str(v)):.2f}" for v in r[AMOUNT_COLUMNS]),
        ]
        for r in [*lines, total]
    ]
    assert as_text == csv_rows

    # Header block: merchant (Chinese, intact), day, figures as numbers.
    assert block["Merchant"] == "杭州小电单车"
    assert block["Business day"] == batch.business_date.isoformat()
    assert D(str(block["Net"])).quantize(D("0.01")) == batch.net_amount
    assert block["Payout status"] == "Pending"


def test_xlsx_cells_are_typed_and_formatted(batch):
    _block, _header, lines, _total, sheet = table(settlement_statement_xlsx(batch))
    first_line = next(row for row in sheet.iter_rows() if row[3].value == lines[0][3] and row[0].value == lines[0][0])

    assert isinstance(lines[0][0], int)  # order id as a number
    assert isinstance(lines[0][2], datetime)  # Beijing time as a date cell
    assert first_line[2].number_format == "yyyy-mm-dd hh:mm"
    for cell in first_line[4:10]:
        assert cell.data_type == "n"
        assert cell.number_format.startswith("#,##0.00")
    assert sheet.freeze_panes is not None
    total_row = next(row for row in sheet.iter_rows() if row[3].value == "Total")
    assert total_row[3].font.bold


def test_xlsx_keeps_chinese_headers_and_text(batch):
    with translation.override("zh-hans"):
        expected_header = statement_header()
        data = settlement_statement_xlsx(batch)
    sheet = load_workbook(io.BytesIO(data)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]

    assert "交易总额" in expected_header and "结算净额" in expected_header
    assert expected_header in [row[:10] for row in rows]
    assert any(row[3] == "订单" for row in rows)  # the line type, translated
    assert "杭州小电单车" in [row[1] for row in rows]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+86", "'+86"),
        ("-x", "'-x"),
        ("@A1", "'@A1"),
        ("\tT", "'\tT"),
        ("\rR", "'\rR"),
        ("T-1", "T-1"),
        ("", ""),
        (None, ""),
        (12, "12"),
    ],
)
def test_safe_text_cell_prefixes_formula_starts_only(value, expected):
    assert safe_text_cell(value) == expected


def test_statement_text_cells_cannot_carry_formulas_but_amounts_stay_numbers(batch):
    item = batch.items.filter(order__isnull=False).select_related("order").first()
    CreditOrder.objects.filter(pk=item.order_id).update(out_order_no="=cmd|'/C calc'!A0")
    rows = list(csv.reader(io.StringIO(statement_csv(batch).decode("utf-8-sig"))))[1:]
    assert "'=cmd|'/C calc'!A0" in [row[1] for row in rows]
    assert any(row[9].startswith("-") for row in rows)  # a negative net amount keeps its sign
    _block, _header, lines, _total, sheet = table(settlement_statement_xlsx(batch))
    cells = [row[1] for row in sheet.iter_rows() if row[1].value == "'=cmd|'/C calc'!A0"]
    assert cells and all(cell.data_type == "s" for cell in cells)
    assert all(row[1] is None or not str(row[1]).startswith("=") for row in lines)


def test_statement_file_names_and_types(batch):
    xlsx = statement_file(batch, "xlsx")
    assert xlsx.content_type == XLSX_CONTENT_TYPE
    assert xlsx.filename.endswith(".xlsx") and xlsx.content.startswith(b"PK")
    csv_file = statement_file(batch, "csv")
    assert csv_file.filename.endswith(".csv") and csv_file.content.startswith(b"\xef\xbb\xbf")
    with pytest.raises(ValueError):
        statement_file(batch, "pdf")


def test_admin_offers_the_xlsx_statement(client, staff_user, batch):
    client.force_login(staff_user)

    page = client.get(f"/admin/bnpl/settlementbatch/{batch.pk}/change/")
    response = client.get(f"/admin/bnpl/settlementbatch/{batch.pk}/statement.xlsx")

    assert f"/admin/bnpl/settlementbatch/{batch.pk}/statement.xlsx" in page.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == XLSX_CONTENT_TYPE
    assert 'filename="statement-' in response["Content-Disposition"]
    _block, _header, lines, _total, _sheet = table(response.content)
    assert len(lines) == batch.item_count
