"""A consumer in zh-hans: catalogue (htmx search) → a 先享 listing → log in → confirm (assessment) → my orders
(htmx filter) → add a sandbox card → pay now.

The merchant's side of the order (usage reported, order completed) has no consumer page: it is done
through the same services the merchant API calls, between the browser steps.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.utils import timezone
from playwright.sync_api import Page, expect

from bnpl.choices import ActorKind, OrderStatus
from bnpl.models import CreditOrder
from bnpl.services import credit_order_complete, usage_record
from merchants.choices import Scenario
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

from .conftest import Steps, zh

PASSWORD = "demo1234"  # tests.factories.UserFactory


def test_consumer_orders_from_the_catalogue_confirms_and_pays_now(page: Page, steps: Steps):
    merchant = MerchantFactory(display_name="小驴充电")
    listing = ListingFactory(merchant=merchant, title="小驴电动车充电桩")
    ListingFactory(
        merchant=MerchantFactory(display_name="西湖游泳健身"),
        title="游泳单次票",
        description="50 米标准泳池",
        scenario=Scenario.SWIMMING_FITNESS,
        pricing_rule={"kind": "fixed", "price": "30.00", "name": "单次"},
        max_amount=Decimal("30.00"),
    )
    consumer = ConsumerFactory(phone="13900001234")

    # The catalogue, in Chinese because the browser asks for zh-CN.
    page.goto("/shop/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("heading", name=zh("Use first, pay after the service"))).to_be_visible()
    # The language switch names the other language in that language, for whoever cannot read this one.
    expect(page.get_by_role("button", name="English", exact=True)).to_have_attribute("lang", "en")
    results = page.locator("#results")
    expect(results.get_by_text("游泳单次票")).to_be_visible()
    steps.shot("catalogue")

    # Active search (htmx): typing swaps #results and pushes the query into the address bar.
    page.get_by_placeholder(zh("Search services or merchants")).fill("充电")
    expect(page).to_have_url(re.compile(r"[?&]q=%E5%85%85%E7%94%B5"))
    expect(results.get_by_text("游泳单次票")).to_have_count(0)
    expect(results.get_by_role("link", name=re.compile("小驴电动车充电桩"))).to_be_visible()
    steps.shot("catalogue-search")

    results.get_by_role("link", name=re.compile("小驴电动车充电桩")).click()
    expect(page.get_by_role("heading", name="小驴电动车充电桩")).to_be_visible()
    steps.shot("listing")

    # Not logged in: the button leads to the log-in page and back to the listing.
    page.get_by_role("link", name=zh("Log in to use pay later")).click()
    page.get_by_label(zh("Mobile number")).fill(consumer.phone)
    page.get_by_label(zh("Password")).fill(PASSWORD)
    steps.shot("login")
    page.locator("main").get_by_role("button", name=zh("Log in")).click()
    expect(page).to_have_url(re.compile(rf"/shop/{listing.pk}/$"))
    steps.shot("listing-logged-in")

    # 先享后付 → the hosted confirmation page; the consent box is never pre-ticked.
    page.get_by_role("button", name=zh("Use first, pay later", context="button")).click()
    expect(page).to_have_url(re.compile(r"/pay/confirm/"))
    consent = page.get_by_label(
        zh("I have read the terms above and agree to be charged automatically after the service.")
    )
    expect(consent).not_to_be_checked()
    expect(page.get_by_text("¥20.00").first).to_be_visible()
    steps.shot("confirm")
    consent.check()
    page.get_by_role("button", name=zh("Confirm and use first")).click()

    # The assessment admitted the consumer: the order is active and ¥20.00 is held.
    expect(page.get_by_role("heading", name=zh("You're all set: use first, pay later"))).to_be_visible()
    steps.shot("assessment-admitted")
    order = CreditOrder.objects.get(listing=listing, consumer=consumer)
    assert (order.status, order.hold_amount) == (OrderStatus.ACTIVE, Decimal("20.00"))

    # The merchant reports three hours of charging and completes the order (its API's services; no page).
    usage_record(
        actor=None,
        merchant=merchant,
        order=order,
        merchant_event_id="session-1",
        quantity="3",
        occurred_at=timezone.now(),
    )
    credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order)

    # My orders, filtered by status through htmx: the completed order awaits its charge.
    page.get_by_role("navigation").first.get_by_role("link", name=zh("Orders"), exact=True).click()
    expect(page).to_have_title(re.compile(zh("My orders")))
    page.get_by_label(zh("Status"), exact=True).select_option(OrderStatus.COMPLETED.value)
    expect(page).to_have_url(re.compile(r"[?&]status=completed"))
    order_link = page.locator("#results").get_by_role("link", name=re.compile("小驴电动车充电桩"))
    expect(order_link).to_contain_text(zh("Awaiting charge"))
    expect(order_link).to_contain_text("¥3.00")
    steps.shot("my-orders-filtered")

    # A sandbox card to pay with.
    page.goto("/me/payment-methods/")
    page.get_by_label(zh("Name")).fill("招商银行储蓄卡(1234)")
    page.get_by_label(zh("Sandbox balance (¥)")).fill("50.00")
    page.get_by_role("button", name=zh("Add")).click()
    expect(page.get_by_text("招商银行储蓄卡(1234)").first).to_be_visible()
    steps.shot("payment-method-added")

    # Pay now from the order page.
    page.goto(f"/me/orders/{order.pk}/")
    pay = page.get_by_role("button", name=re.compile(zh("Pay now")))
    expect(pay).to_contain_text("¥3.00")
    steps.shot("order-before-pay")
    pay.click()
    expect(page.get_by_role("alert").filter(has_text=zh("Paid. Thank you for keeping your promise."))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(zh("Pay now")))).to_have_count(0)
    steps.shot("order-paid")

    order.refresh_from_db()
    assert (order.status, order.hold_amount) == (OrderStatus.PAID, Decimal("0.00"))
