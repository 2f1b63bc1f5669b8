"""A merchant in zh-hans: sign up → the onboarding wizard (htmx USCC check) → a metered listing (htmx rule
editor and bill preview) → complete an order from its usage → refund → download the statement (CSV, XLSX).

What only staff, a consumer or time creates is made through the real services between the browser steps,
each marked below: the approval (staff review it in the admin: tests/browser/test_staff_journey.py), the
consumer's order and the usage the merchant's systems report (API services), the charge (the charge run)
and the settlement batch (the daily settlement job).
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

from django.utils import timezone
from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from bnpl.charging import run_charges
from bnpl.choices import OrderStatus
from bnpl.gateway.services import sandbox_funding_source_add
from bnpl.models import CreditOrder, SettlementBatch
from bnpl.portal.services import catalogue_order_place
from bnpl.services import credit_order_confirm, usage_record
from bnpl.settlement import settle_merchants
from merchants.choices import MerchantStatus
from merchants.models import Listing, Merchant
from merchants.services import merchant_approve
from tests.factories import ConsumerFactory, make_uscc

from .conftest import Steps, zh

PASSWORD = "Xianxiang-2026"


def test_merchant_signs_up_sells_a_metered_service_refunds_and_downloads_the_statement(page: Page, steps: Steps):
    uscc = make_uscc(4242)

    # Sign up: the applicant's login.
    page.goto("/merchant/signup/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.get_by_label(zh("Username")).fill("xiaolv-owner")
    page.get_by_label(zh("E-mail")).fill("owner@xiaolv.example")
    page.get_by_label(zh("Mobile number")).fill("13900002222")
    page.get_by_label(zh("Password"), exact=True).fill(PASSWORD)
    page.get_by_label(zh("Password again")).fill(PASSWORD)
    steps.shot("signup")
    page.get_by_role("button", name=zh("Create login and continue")).click()

    # The wizard, one step per page. The USCC is checked as it is typed (htmx swaps #uscc-feedback).
    expect(page.get_by_role("heading", name=zh("Merchant application"))).to_be_visible()
    page.get_by_label(zh("Legal name")).fill("杭州小驴出行科技有限公司")
    page.get_by_label(zh("Display name")).fill("小驴充电")
    usccs = page.get_by_label(zh("Unified social credit code (USCC)"))
    usccs.fill(uscc[:-1] + ("0" if uscc[-1] != "0" else "1"))  # a wrong check character first
    expect(page.locator("#uscc-feedback .text-danger")).to_be_visible()
    usccs.fill(uscc)
    expect(page.locator("#uscc-feedback")).to_have_text(zh("Valid code, not registered yet."))
    page.get_by_label(zh("City")).fill("杭州")
    steps.shot("onboarding-company")
    save = page.get_by_role("button", name=zh("Save and continue"))
    save.click()
    page.get_by_label(zh("Legal representative")).fill("王小驴")
    steps.shot("onboarding-legal")
    save.click()
    page.get_by_label(zh("Contact person")).fill("李运营")
    expect(page.get_by_label(zh("Contact phone"))).to_have_value("13900002222")  # prefilled from the sign-up
    steps.shot("onboarding-contact")
    save.click()
    page.get_by_label(zh("E-bike charging")).check()
    steps.shot("onboarding-categories")
    save.click()
    page.get_by_label(zh("Bank and branch")).fill("招商银行杭州分行")
    expect(page.get_by_label(zh("Account name"))).to_have_value("杭州小驴出行科技有限公司")
    page.get_by_label(zh("Account number")).fill("6225880123456789")
    steps.shot("onboarding-bank")
    save.click()
    expect(page.get_by_role("heading", name=zh("Fee terms"))).to_be_visible()
    steps.shot("onboarding-review")
    page.get_by_role("button", name=zh("Accept the fee terms and submit for review")).click()
    expect(page.locator("#application-status")).to_be_visible()
    expect(
        page.get_by_role("alert").filter(
            has_text=zh("Your application was submitted. We usually review it within one working day.")
        )
    ).to_be_visible()
    steps.shot("application-submitted")
    merchant = Merchant.objects.get(uscc=uscc)
    assert merchant.status == MerchantStatus.SUBMITTED

    # Staff approve the application (the service behind the admin's action; the admin is journey 3).
    merchant_approve(actor=None, merchant=merchant)

    # A metered listing: per kWh. Changing the unit swaps the rule editor (htmx); typing updates the preview.
    page.goto("/merchant/listings/new/")
    page.get_by_label(zh("Title"), exact=True).fill("小驴快充 按电量计费")
    page.get_by_label(zh("Per-order ceiling (¥)")).fill("30.00")
    expect(page.get_by_label(zh("Hours"), exact=True)).to_be_visible()  # the sample of an hourly rule
    page.get_by_label(zh("Unit"), exact=True).select_option("kwh")
    expect(page.get_by_label(zh("Quantity"), exact=True)).to_be_visible()  # swapped: the sample of a kWh rule
    expect(page.get_by_label(zh("Hours"), exact=True)).to_have_count(0)
    page.get_by_label(zh("Price per unit (¥)"), exact=True).fill("1.50")
    page.get_by_label(zh("Quantity"), exact=True).fill("4")
    preview = page.get_by_test_id("preview-sentence")
    expect(page.locator("#bill-preview tfoot")).to_contain_text("¥6.00")
    expect(preview).to_be_visible()
    steps.shot("listing-editor-preview")
    page.get_by_role("button", name=zh("Put on sale")).click()
    expect(page.get_by_role("alert").filter(has_text="小驴快充 按电量计费")).to_be_visible()
    steps.shot("listing-on-sale")
    listing = Listing.objects.get(merchant=merchant)
    assert listing.pricing_rule["unit"] == "kwh" and Decimal(listing.pricing_rule["unit_price"]) == Decimal("1.50")

    # A consumer orders and confirms; the charging post reports 4 kWh (the consumer's pages and the API's
    # usage service: journey 1 covers the consumer's side in the browser).
    consumer = ConsumerFactory()
    sandbox_funding_source_add(actor=None, consumer=consumer, label="招商银行储蓄卡(1234)", balance_amount="100.00")
    order = catalogue_order_place(actor=consumer.user, consumer=consumer, listing=listing, nonce="b0a1b2c3d4e5f607")
    order = credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
    usage_record(
        actor=None,
        merchant=merchant,
        order=order,
        merchant_event_id="pile-7-s1",
        quantity="4",
        occurred_at=timezone.now(),
    )

    # Orders: the search box filters through htmx, then the order's page and its "complete" action.
    page.get_by_role("link", name=zh("Orders"), exact=True).click()
    orders = page.locator("#orders")
    page.get_by_role("searchbox").fill(order.out_order_no)
    expect(page).to_have_url(re.compile(rf"[?&]q={order.out_order_no}"))
    expect(orders.get_by_role("link", name=order.out_order_no)).to_be_visible()
    steps.shot("orders-search")
    orders.get_by_role("link", name=order.out_order_no).click()
    page.get_by_role("link", name=zh("Complete with the bill")).click()
    page.get_by_label(zh("Rate the reported usage")).check()
    steps.shot("complete-with-usage")
    page.get_by_role("button", name=zh("Confirm: %(label)s") % {"label": zh("Complete with the bill")}).click()
    expect(page.get_by_role("alert").filter(has_text=zh("The order is completed."))).to_be_visible()
    steps.shot("order-completed")
    order.refresh_from_db()
    assert (order.status, order.amount_due) == (OrderStatus.COMPLETED, Decimal("6.00"))

    # The charge run charges it (the every-minute job, run here once).
    assert run_charges(threads=1).succeeded == 1

    # Refund part of it.
    page.reload()
    page.get_by_role("link", name=zh("Refund"), exact=True).click()
    page.get_by_label(zh("Refund amount (¥)")).fill("1.00")
    page.get_by_label(zh("Reason")).fill("充电桩故障，退还部分费用")
    steps.shot("refund")
    page.get_by_role("button", name=zh("Confirm: %(label)s") % {"label": zh("Refund")}).click()
    expect(page.get_by_role("alert").filter(has_text=zh("The refund is sent."))).to_be_visible()
    steps.shot("refunded")
    assert CreditOrder.objects.get(pk=order.pk).status == OrderStatus.PARTIALLY_REFUNDED

    # The daily settlement job settles today's entries (run here for today instead of tomorrow at dawn).
    [batch_id] = settle_merchants(business_date=timezone.localdate(), merchant_ids=[merchant.pk])
    batch = SettlementBatch.objects.get(pk=batch_id)

    page.get_by_role("link", name=zh("Settlements"), exact=True).click()
    page.get_by_role("link", name=batch.business_date.strftime("%Y-%m-%d")).click()
    expect(page.locator("main")).to_contain_text(order.out_order_no)
    steps.shot("settlement-batch")

    with page.expect_download() as csv_download:
        page.get_by_role("link", name=zh("Statement (CSV)")).click()
    csv_file = steps.keep(csv_download.value)
    assert csv_file.suffix == ".csv"
    text = csv_file.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    order_rows = [row for row in rows if order.out_order_no in row]
    # The charge, the platform's fee and the refund, each with its net amount; the total is the batch's net.
    assert [row[-1] for row in order_rows] == ["6.00", "-0.04", "-1.00"], rows
    assert rows[-1][-1] == str(batch.net_amount) == "4.96"

    with page.expect_download() as xlsx_download:
        page.get_by_role("link", name=zh("Statement (Excel)")).click()
    xlsx_file = steps.keep(xlsx_download.value)
    assert xlsx_file.suffix == ".xlsx"
    workbook = load_workbook(xlsx_file, read_only=True)
    cells = [cell for sheet in workbook.worksheets for row in sheet.iter_rows(values_only=True) for cell in row]
    assert order.out_order_no in cells
