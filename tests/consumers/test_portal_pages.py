"""My pay-later (/me/): isolation, lists and their query counts, authorisations, payment methods, settings."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import AgreementStatus, OrderStatus
from bnpl.models import Agreement, CreditOrder, SandboxFundingSource
from bnpl.services import agreement_sign
from consumers.models import Consumer, CreditProfile, CreditProfileEvent
from consumers.services import credit_limit_set, credit_score_set
from merchants.choices import ConfirmMode, Scenario
from tests.bnpl.charging_helpers import fund
from tests.bnpl.helpers import order_in
from tests.consumers.portal_helpers import logged_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, make_resident_id

pytestmark = pytest.mark.django_db
S = OrderStatus
D = Decimal


def make_orders(consumer, count: int) -> list[CreditOrder]:
    """``count`` orders over several merchants and states (a realistic list page)."""
    statuses = [S.ACTIVE, S.COMPLETED, S.PAID, S.CANCELLED, S.OVERDUE, S.COLLECTING]
    orders = []
    for i in range(count):
        listing = ListingFactory(merchant=MerchantFactory())
        orders.append(order_in(statuses[i % len(statuses)], listing=listing, consumer=consumer))
    return orders


def queries(client, url: str, **params) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    return response.status_code, len(ctx.captured_queries)


# --------------------------------------------------------------------------- isolation


@pytest.mark.parametrize(
    ("name", "method"),
    [("me:order", "get"), ("me:order_pay", "post"), ("me:order_cancel", "post"), ("pay:result", "get")],
)
def test_another_consumers_order_is_a_404(listing, name, method):
    owner = ConsumerFactory()
    order = order_in(S.COMPLETED, listing=listing, consumer=owner)
    intruder = logged_in(ConsumerFactory())
    before = CreditOrder.objects.filter(pk=order.pk).values().get()

    response = getattr(intruder, method)(reverse(name, args=[order.pk]), {"reason": "changed_mind"})

    assert response.status_code == 404
    assert CreditOrder.objects.filter(pk=order.pk).values().get() == before


def test_another_consumers_agreement_and_card_are_404s(listing):
    owner = ConsumerFactory()
    agreement_listing = ListingFactory(confirm_mode=ConfirmMode.AGREEMENT)
    agreement = agreement_sign(actor=None, consumer=owner, listing=agreement_listing)
    card = fund(owner)
    intruder = logged_in(ConsumerFactory())

    assert intruder.post(reverse("me:agreement_revoke", args=[agreement.pk])).status_code == 404
    assert intruder.post(reverse("me:payment_method_default", args=[card.pk])).status_code == 404
    assert Agreement.objects.get(pk=agreement.pk).status == AgreementStatus.VALID


def test_the_order_list_shows_only_my_orders(listing):
    mine, theirs = ConsumerFactory(), ConsumerFactory()
    my_order = order_in(S.ACTIVE, listing=listing, consumer=mine, title="我的充电")
    order_in(S.ACTIVE, listing=listing, consumer=theirs, title="别人的充电")

    page = logged_in(mine).get(reverse("me:orders")).content.decode()

    assert "我的充电" in page and "别人的充电" not in page
    assert reverse("me:order", args=[my_order.pk]) in page


def test_portal_pages_ask_an_anonymous_visitor_to_log_in():
    from django.test import Client

    response = Client().get(reverse("me:orders"))

    assert response["Location"] == f"{reverse('accounts:login')}?next=/me/orders/"


# --------------------------------------------------------------------------- query counts


@pytest.mark.parametrize("name", ["me:orders", "me:home", "shop:index", "me:payment_methods"])
def test_list_pages_cost_the_same_queries_for_3_or_13_rows(name, django_assert_num_queries):
    few, many = ConsumerFactory(), ConsumerFactory()
    make_orders(few, 3)
    make_orders(many, 13)
    for _ in range(3):
        fund(few)
    for _ in range(13):
        fund(many)
    status, baseline = queries(logged_in(few), reverse(name))
    assert status == 200
    ListingFactory.create_batch(10)  # the catalogue grows too
    client = logged_in(many)

    with django_assert_num_queries(baseline):
        assert client.get(reverse(name)).status_code == 200


def test_the_order_list_costs_a_fixed_number_of_queries(django_assert_num_queries):
    consumer = ConsumerFactory()
    make_orders(consumer, 13)
    client = logged_in(consumer)
    client.get(reverse("me:orders"))  # warm the session

    # session, user, consumer+profile, count, page of orders (with merchants), unread messages in the nav
    with django_assert_num_queries(6):
        client.get(reverse("me:orders"), {"tab": "all"})


def test_the_agreement_list_costs_the_same_for_1_or_6_agreements():
    consumer = ConsumerFactory()
    agreement_sign(actor=None, consumer=consumer, listing=ListingFactory(confirm_mode=ConfirmMode.AGREEMENT))
    client = logged_in(consumer)
    one = queries(client, reverse("me:agreements"))
    for _ in range(5):
        agreement_sign(actor=None, consumer=consumer, listing=ListingFactory(confirm_mode=ConfirmMode.AGREEMENT))
    six = queries(client, reverse("me:agreements"))

    assert one == six


# --------------------------------------------------------------------------- orders list


def test_order_tabs_filters_and_search(listing):
    consumer = ConsumerFactory()
    express = ListingFactory(
        merchant=MerchantFactory(display_name="顺丰速运"),
        scenario=Scenario.EXPRESS_DELIVERY,
        title="寄快递",
    )
    active = order_in(S.ACTIVE, listing=listing, consumer=consumer, title="充电 A")
    due = order_in(S.COMPLETED, listing=express, consumer=consumer, title="寄快递")
    paid = order_in(S.PAID, listing=listing, consumer=consumer, title="充电 B")
    client = logged_in(consumer)

    def shown(**params) -> set[int]:
        page = client.get(reverse("me:orders"), params).content.decode()
        return {o.pk for o in (active, due, paid) if reverse("me:order", args=[o.pk]) in page}

    assert shown() == {active.pk, due.pk, paid.pk}
    assert shown(tab="open") == {active.pk}
    assert shown(tab="upcoming") == {due.pk}
    assert shown(tab="past") == {paid.pk}
    assert shown(q="顺丰") == {due.pk}
    assert shown(q=paid.out_order_no) == {paid.pk}
    assert shown(status=S.PAID) == {paid.pk}
    assert shown(scenario=Scenario.EXPRESS_DELIVERY) == {due.pk}
    assert shown(status="nonsense", tab="nonsense") == {active.pk, due.pk, paid.pk}


def test_the_active_search_gets_a_partial_and_pages(listing):
    consumer = ConsumerFactory()
    for _ in range(12):
        order_in(S.ACTIVE, listing=listing, consumer=consumer)
    client = logged_in(consumer)

    first = client.get(reverse("me:orders"), {"q": "电动车"}, headers={"HX-Request": "true"}).content.decode()
    second = client.get(reverse("me:orders"), {"q": "电动车", "page": "2"}, headers={"HX-Request": "true"})

    assert first.lstrip().startswith('<div id="results">') and "<html" not in first
    assert first.count('class="list-group-item') == 10
    assert "Page 1 of 2" in first and "q=%E7%94%B5%E5%8A%A8%E8%BD%A6&page=2" in first
    assert second.content.decode().count('class="list-group-item') == 2
    search_box = client.get(reverse("me:orders")).content.decode()
    assert "data-active-search" in search_box and 'hx-trigger="submit, search-ready' in search_box


def test_the_order_page_shows_bill_usage_attempts_and_timeline(listing):
    from bnpl.choices import ActorKind
    from bnpl.services import credit_order_complete, usage_record

    consumer = ConsumerFactory()
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer)
    usage_record(
        actor=None,
        merchant=listing.merchant,
        order=order,
        merchant_event_id="ev-1",
        quantity="2.5",
        occurred_at=timezone.now(),
    )
    credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order)
    fund(consumer, "1.00")
    client = logged_in(consumer)
    client.post(reverse("me:order_pay", args=[order.pk]))

    page = client.get(reverse("me:order", args=[order.pk])).content.decode()

    assert "¥3.00" in page  # 2.5 hours rounded up to 3 started hours at ¥1
    assert "2.5" in page  # the usage
    assert "Declined" in page and "insufficient_funds" in page and "Consumer paid now" in page
    assert page.count("Awaiting charge") >= 1
    assert "Pay now" in page


# --------------------------------------------------------------------------- authorisations


def test_revoke_is_refused_while_an_order_is_open_then_allowed(merchant):
    consumer = ConsumerFactory()
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    agreement = agreement_sign(actor=None, consumer=consumer, listing=listing)
    order = order_in(S.ACTIVE, listing=listing, consumer=consumer, agreement=agreement, title="开着的订单")
    client = logged_in(consumer)
    listed = client.get(reverse("me:agreements")).content.decode()
    assert reverse("me:agreement_revoke", args=[agreement.pk]) in listed and "1 order open" in listed

    ask = client.get(reverse("me:agreement_revoke", args=[agreement.pk]))
    assert "Yes, revoke" in ask.content.decode()
    refused = client.post(reverse("me:agreement_revoke", args=[agreement.pk]))

    assert refused.status_code == 409
    assert "The agreement cannot be closed while an order under it is still open." in refused.content.decode()
    assert "开着的订单" in refused.content.decode()
    assert Agreement.objects.get(pk=agreement.pk).status == AgreementStatus.VALID

    CreditOrder.objects.filter(pk=order.pk).update(status=S.CANCELLED, hold_amount=0, closed_at=timezone.now())
    allowed = client.post(reverse("me:agreement_revoke", args=[agreement.pk]), follow=True)

    revoked = Agreement.objects.get(pk=agreement.pk)
    assert (revoked.status, revoked.close_reason) == (AgreementStatus.CLOSED, "Revoked by the consumer")
    assert f"Your authorisation for {merchant.display_name} is revoked." in allowed.content.decode()


# --------------------------------------------------------------------------- score, payment methods, settings


def test_score_history_lists_each_change_with_its_reason_and_feeds_the_chart():
    consumer = ConsumerFactory()
    credit_score_set(actor=None, consumer=consumer, score=680, reason="kept 5 promises")
    credit_limit_set(actor=None, consumer=consumer, amount="1500.00", reason_code="growth", reason="5 kept promises")
    page = logged_in(consumer).get(reverse("me:score")).content.decode()

    assert "kept 5 promises" in page and "5 kept promises" in page
    assert "650 → 680" in page and "¥1,000.00 → ¥1,500.00" in page
    data = json.loads(re.search(r'id="score-chart-data" type="application/json">(.*?)</script>', page).group(1))
    assert [p["y"] for p in data["score"]] == [650, 680, 680]
    assert [p["y"] for p in data["limit"]] == ["1500.00", "1500.00"]
    assert "vendor/chart.js/chart.umd.min.js" in page


def test_payment_methods_add_set_default_and_show_balance():
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    client.post(reverse("me:payment_methods"), {"label": "招商银行储蓄卡(1234)", "balance_amount": "80.00"})
    client.post(reverse("me:payment_methods"), {"label": "余额钱包", "balance_amount": "5.5"})
    first, second = SandboxFundingSource.objects.filter(consumer=consumer).order_by("id")
    assert (first.is_default, second.is_default) == (True, False)

    client.post(reverse("me:payment_method_default", args=[second.pk]))

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_default, second.is_default) == (False, True)
    page = client.get(reverse("me:payment_methods")).content.decode()
    assert "¥80.00" in page and "¥5.50" in page


def test_a_bad_balance_keeps_what_was_typed_and_says_why():
    client = logged_in(ConsumerFactory())

    response = client.post(reverse("me:payment_methods"), {"label": "我的卡", "balance_amount": "12.345"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter an amount in yuan, not negative, with at most two decimal places." in page
    assert 'value="我的卡"' in page and 'value="12.345"' in page
    assert not SandboxFundingSource.objects.exists()


def test_spend_cap_is_set_refused_above_the_limit_and_cleared():
    consumer = ConsumerFactory()
    client = logged_in(consumer)

    client.post(reverse("me:spend_cap"), {"amount": "300"})
    assert CreditProfile.objects.get(consumer=consumer).spend_cap_amount == D("300.00")
    refused = client.post(reverse("me:spend_cap"), {"amount": "5000"})
    assert refused.status_code == 400
    assert "A personal spend cap cannot be above your credit limit of ¥1,000.00." in refused.content.decode()
    assert 'value="5000"' in refused.content.decode()
    assert CreditProfile.objects.get(consumer=consumer).spend_cap_amount == D("300.00")
    client.post(reverse("me:spend_cap"), {"amount": ""})
    assert CreditProfile.objects.get(consumer=consumer).spend_cap_amount is None
    assert CreditProfileEvent.objects.filter(profile__consumer=consumer, kind="spend_cap_set").count() == 2


def test_identity_verification_masks_the_number_everywhere():
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    id_number = make_resident_id(7)

    response = client.post(reverse("me:verify"), {"real_name": "王小明", "id_number": id_number})

    assert response["Location"] == reverse("me:settings")
    page = client.get(reverse("me:settings")).content.decode()
    assert id_number not in page
    assert f"{id_number[:4]}**********{id_number[-4:]}" in page
    assert consumer.phone not in page and f"{consumer.phone[:3]}****{consumer.phone[-4:]}" in page
    assert Consumer.objects.get(pk=consumer.pk).is_verified


def test_an_invalid_id_number_is_explained_and_never_echoed():
    client = logged_in(ConsumerFactory())

    response = client.post(reverse("me:verify"), {"real_name": "王小明", "id_number": "330106199001011230"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "330106199001011230" not in page
    assert 'value="王小明"' in page
    assert "check digit" in page


def test_data_export_is_a_json_download_of_my_own_data(listing):
    consumer = ConsumerFactory()
    mine = order_in(S.PAID, listing=listing, consumer=consumer, paid_at=timezone.now() - timedelta(days=1))
    order_in(S.PAID, listing=listing, consumer=ConsumerFactory())

    response = logged_in(consumer).post(reverse("me:export"))

    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="my-pay-later-data-')
    data = json.loads(response.content)
    assert [o["id"] for o in data["orders"]] == [mine.pk]
    assert data["account"]["phone"] == consumer.phone
    assert data["credit_profile"]["credit_limit"] == "1000.00"


def test_export_needs_a_post():
    assert logged_in(ConsumerFactory()).get(reverse("me:export")).status_code == 405


def test_home_shows_the_five_dimension_breakdown_of_the_latest_assessment(listing):
    from tests.consumers.portal_helpers import place_from_catalogue

    consumer = ConsumerFactory()
    client = logged_in(consumer)
    assert "What your score is made of" not in client.get(reverse("me:home")).content.decode()
    order = place_from_catalogue(client, listing)
    client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    page = client.get(reverse("me:home")).content.decode()

    assert "What your score is made of" in page
    for label in ("Credit history", "Ability to perform", "Behaviour", "Identity", "Connections"):
        assert label in page
    assert "¥980.00" in page  # available: ¥1,000 limit less the ¥20 held
