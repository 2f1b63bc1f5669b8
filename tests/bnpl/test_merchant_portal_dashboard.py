"""The merchant dashboard: figures for today / 7 / 30 days, links to the orders behind them, roles, scoping
and a query count that does not grow with the orders."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.merchant_portal.selectors import merchant_dashboard
from bnpl.models import CreditOrder
from bnpl.models.charging import ChargeAttempt
from bnpl.models.settlement import Dispute
from merchants.choices import MemberRole
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory, UserFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("100.00"))


def make(listing, status, *, days_ago=0, **extra):
    order = order_in(status, listing=listing, consumer=ConsumerFactory(), **extra)
    if days_ago:
        CreditOrder.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return order


def attempt(order, status, seq=1):
    """An attempt as the charge paths record it: a success also stamps the order's ``charged_at``."""
    now = timezone.now()
    stamp = {"charged_at": now} if status == "succeeded" else {}
    CreditOrder.objects.filter(pk=order.pk).update(charge_attempt_count=seq, **stamp)
    return ChargeAttempt.objects.create(
        order=order,
        sequence=seq,
        idempotency_key=f"k-{order.pk}-{seq}",
        trigger="scheduled",
        amount=D("5.00"),
        status=status,
        decline_code="insufficient_funds" if status == "declined" else "",
        gateway_reference="ref" if status == "succeeded" else "",
        finished_at=now,
    )


def test_figures_per_window(listing):
    paid = make(listing, S.PAID)  # today, ¥5.00 billed
    make(listing, S.DECLINED)
    make(listing, S.ACTIVE, days_ago=3)
    overdue = make(listing, S.OVERDUE, days_ago=10, dpd_bucket="M0", dpd=5, guaranteed_at=timezone.now())
    make(listing, S.PAID, days_ago=40)  # outside every window
    refunded = make(listing, S.PARTIALLY_REFUNDED, days_ago=2, refunded_amount=D("2.00"))
    attempt(paid, "succeeded")
    attempt(overdue, "declined")
    attempt(refunded, "succeeded")
    Dispute.objects.create(
        order=overdue,
        consumer=overdue.consumer,
        merchant=listing.merchant,
        reason="wrong_amount",
        disputed_amount=D("1.00"),
        respond_by=timezone.now() + timedelta(days=3),
    )
    make(ListingFactory(), S.PAID)  # another merchant's
    w = merchant_dashboard(merchant=listing.merchant)["windows"]
    today, week, month = w["today"], w["7d"], w["30d"]
    assert (today["orders"], week["orders"], month["orders"]) == (2, 4, 5)
    assert today["approval_rate"] == 50.0 and month["approval_rate"] == 80.0
    assert today["gmv"] == D("5.00") and month["gmv"] == D("15.00")
    assert month["charge_success_rate"] == pytest.approx(66.7) and today["charge_success_rate"] == 100.0
    assert month["overdue_rate"] == pytest.approx(33.3) and week["overdue_rate"] == 0.0
    assert [b["count"] for b in month["dpd"]] == [1, 0, 0, 0]
    assert month["guaranteed_amount"] == D("5.00") and week["guaranteed"] == 0
    assert (week["refunded"], week["refunded_amount"]) == (1, D("2.00"))
    assert (today["disputes"], month["disputes"]) == (0, 1)


def test_empty_merchant_has_no_rates(merchant):
    w = merchant_dashboard(merchant=merchant)["windows"]["30d"]
    assert w["orders"] == 0 and w["approval_rate"] is None and w["charge_success_rate"] is None


@pytest.mark.parametrize("role", list(MemberRole))
def test_page_renders_for_every_role_with_chart_data_and_links(client, listing, role):
    make(listing, S.OVERDUE, dpd_bucket="M1", dpd=40)
    member = MerchantMemberFactory(merchant=listing.merchant, role=role)
    client.force_login(member.user)
    response = client.get(reverse("merchant:dashboard"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="dashboard-data"' in body and "chart.umd.min.js" in body
    chart = response.context["chart"]
    assert len(chart["labels"]) == 30 and chart["dpd"] == [0, 1, 0, 0]
    json.dumps(chart)  # what json_script serialises
    links = response.context["windows"][2]["links"]
    orders = client.get(links["dpd"]["M1"]).context["page"].rows
    assert len(orders) == 1 and orders[0].dpd_bucket == "M1"
    assert links["overdue"].replace("&", "&amp;") in body


def test_every_link_lists_the_orders_the_figure_counts(client, listing):
    make(listing, S.PAID)
    make(listing, S.DECLINED)
    make(listing, S.PARTIALLY_REFUNDED, refunded_amount=D("1.00"))
    make(listing, S.OVERDUE, guaranteed_at=timezone.now())
    member = MerchantMemberFactory(merchant=listing.merchant)
    client.force_login(member.user)
    response = client.get(reverse("merchant:dashboard"))
    window = response.context["windows"][0]
    w, links = window["w"], window["links"]
    for figure, key in [
        ("orders", "orders"),
        ("approved", "approved"),
        ("billed", "gmv"),
        ("overdue", "overdue"),
        ("guaranteed", "guaranteed"),
        ("refunded", "refunded"),
    ]:
        listed = client.get(links[key]).context["page"].total
        assert listed == w[figure], figure


def test_user_without_membership_is_refused(client):
    client.force_login(UserFactory())
    assert client.get(reverse("merchant:dashboard")).status_code == 403


def test_dashboard_shows_only_the_members_merchant(client, listing):
    other = ListingFactory(max_amount=D("100.00"))
    for _ in range(3):
        make(other, S.PAID)
    member = MerchantMemberFactory(merchant=listing.merchant)
    client.force_login(member.user)
    response = client.get(reverse("merchant:dashboard"))
    assert response.context["windows"][2]["w"]["orders"] == 0


def test_query_count_does_not_grow_with_orders(client, listing):
    member = MerchantMemberFactory(merchant=listing.merchant)
    client.force_login(member.user)
    for _ in range(2):
        make(listing, S.PAID)
    client.get(reverse("merchant:dashboard"))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("merchant:dashboard"))
    for i in range(20):
        order = make(listing, S.PAID, days_ago=i % 25)
        attempt(order, "succeeded")
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("merchant:dashboard"))
    assert len(many) == len(few)
    assert len(few) <= 10


def test_pages_render_in_chinese(client, listing, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    order = make(listing, S.ACTIVE)
    member = MerchantMemberFactory(merchant=listing.merchant)
    client.force_login(member.user)
    for url in (
        reverse("merchant:dashboard"),
        reverse("merchant:orders"),
        reverse("merchant:order_detail", args=[order.pk]),
        reverse("merchant:order_complete", args=[order.pk]),
    ):
        response = client.get(url, headers={"accept-language": "zh-hans"})
        assert response.status_code == 200, url
        assert 'lang="zh-hans"' in response.content.decode()


def test_charge_success_counts_orders_the_platform_charged(listing):
    charged = make(listing, S.PAID)
    attempt(charged, "declined", seq=1)
    attempt(charged, "succeeded", seq=2)
    elsewhere = make(listing, S.PAID)  # declined, then paid to the merchant directly: tried, not charged
    attempt(elsewhere, "declined")
    in_flight = make(listing, S.COMPLETED, charge_in_flight=True)  # outcome not known yet: left out
    CreditOrder.objects.filter(pk=in_flight.pk).update(charge_attempt_count=1)
    make(listing, S.PAID)  # paid elsewhere before any attempt: not tried
    w = merchant_dashboard(merchant=listing.merchant)["windows"]["today"]
    assert (w["charged"], w["charge_tried"], w["charge_success_rate"]) == (1, 2, 50.0)
