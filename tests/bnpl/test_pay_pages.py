"""The hosted pay pages (/pay/confirm/<token>, /pay/agreement/<token>) and the catalogue that leads to them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import AgreementSignupStatus, AgreementStatus, OrderStatus
from bnpl.models import Agreement, AgreementSignup, CreditOrder, OrderEvent
from bnpl.services import agreement_signup_create, credit_order_create
from consumers.models import CreditProfile
from merchants.choices import ConfirmMode, Scenario
from scoring.models import AdmissionDecision
from tests.bnpl.helpers import run_concurrently
from tests.consumers.portal_helpers import PASSWORD, logged_in, nonce_of, place_from_catalogue
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory

pytestmark = pytest.mark.django_db
S = OrderStatus
D = Decimal


def api_order(listing, **extra) -> CreditOrder:
    """A confirm-each-time order as the merchant API creates it (no consumer named)."""
    return credit_order_create(
        actor=None, actor_kind="merchant", merchant=listing.merchant, listing=listing, out_order_no="API-1", **extra
    )


def snapshot(order: CreditOrder) -> tuple:
    fresh = CreditOrder.objects.get(pk=order.pk)
    return (fresh.status, fresh.consumer_id, fresh.hold_amount, fresh.confirmation_token, fresh.events.count())


# --------------------------------------------------------------------------- confirmation page


def test_the_page_shows_what_the_merchant_asks_before_anything_is_agreed(listing):
    order = api_order(listing)

    page = Client().get(reverse("pay:confirm", args=[order.confirmation_token])).content.decode()

    assert f"{listing.merchant.display_name} offers you pay later" in page
    assert "¥20.00" in page
    assert "¥1.00/hour, each started hour billed in full, capped at ¥10.00 per 24 h" in page
    assert "Charged right after the service ends, for what you used." in page
    assert "you can cancel the order free of charge" in page
    # Not logged in: log in and sign up on the spot, no consent box yet.
    assert 'action="/account/login/"' in page and 'action="/account/signup/"' in page
    assert 'name="consent"' not in page


def test_goods_are_charged_days_after_completion_and_the_page_says_so():
    listing = ListingFactory(scenario=Scenario.LIVE_SHOPPING, pricing_rule={"kind": "fixed", "price": "99.00"})
    order = api_order(listing)

    page = Client().get(reverse("pay:confirm", args=[order.confirmation_token])).content.decode()

    assert "Charged 7 days after the order is completed (after you receive the goods)." in page
    assert "Fixed price ¥99.00" in page


def test_consent_box_is_never_pre_ticked_and_is_required(listing, consumer):
    order = api_order(listing)
    client = logged_in(consumer)
    url = reverse("pay:confirm", args=[order.confirmation_token])
    page = client.get(url).content.decode()
    assert '<input type="checkbox" name="consent" class="form-check-input" required id="id_consent">' in page
    before = snapshot(order)

    response = client.post(url, {})

    assert response.status_code == 400
    assert "Tick the box to agree before you confirm." in response.content.decode()
    assert 'class="form-check-input is-invalid"' in response.content.decode()
    assert snapshot(order) == before
    assert AdmissionDecision.objects.count() == 0


def test_an_api_order_is_confirmed_by_whoever_opens_the_link_and_becomes_theirs(listing, consumer):
    order = api_order(listing)
    client = logged_in(consumer)

    response = client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    assert response["Location"] == reverse("pay:result", args=[order.pk])
    order.refresh_from_db()
    assert (order.status, order.consumer_id, order.hold_amount) == (S.ACTIVE, consumer.pk, D("20.00"))


def test_an_anonymous_confirm_goes_to_log_in_and_comes_back(listing, consumer):
    order = api_order(listing)
    url = reverse("pay:confirm", args=[order.confirmation_token])
    client = Client()
    before = snapshot(order)

    response = client.post(url, {"consent": "on"})

    assert response["Location"] == f"{reverse('accounts:login')}?next={url}"
    assert snapshot(order) == before
    consumer.user.set_password(PASSWORD)
    consumer.user.save()
    login = client.post(reverse("accounts:login"), {"phone": consumer.phone, "password": PASSWORD, "next": url})
    assert login["Location"] == url
    assert 'name="consent"' in client.get(url).content.decode()


def test_an_order_made_out_to_someone_else_cannot_be_confirmed(listing, consumer):
    owner = ConsumerFactory()
    order = api_order(listing, consumer=owner)
    client = logged_in(consumer)
    url = reverse("pay:confirm", args=[order.confirmation_token])
    assert "This order was made out to someone else." in client.get(url).content.decode()
    before = snapshot(order)

    response = client.post(url, {"consent": "on"})

    assert response.status_code == 400
    assert "This order was made out to someone else." in response.content.decode()
    assert snapshot(order) == before


def test_an_expired_link_shows_a_clear_page_and_opens_no_order(listing, consumer):
    order = api_order(listing)
    CreditOrder.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = logged_in(consumer)
    url = reverse("pay:confirm", args=[order.confirmation_token])
    before = snapshot(order)

    shown = client.get(url)
    posted = client.post(url, {"consent": "on"})

    assert (shown.status_code, posted.status_code) == (410, 410)
    assert "This link has expired" in shown.content.decode()
    assert "No order was opened and nothing will be charged." in shown.content.decode()
    assert snapshot(order) == before
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("0.00")


def test_an_unknown_or_used_link_shows_a_clear_page(listing, consumer):
    order = api_order(listing)
    token = order.confirmation_token
    logged_in(consumer).post(reverse("pay:confirm", args=[token]), {"consent": "on"})
    stranger = logged_in(ConsumerFactory())

    used = stranger.post(reverse("pay:confirm", args=[token]), {"consent": "on"})
    unknown = Client().get(reverse("pay:confirm", args=["no-such-token"]))

    assert (used.status_code, unknown.status_code) == (404, 404)
    assert "This link is no longer valid" in used.content.decode()
    assert CreditOrder.objects.get(pk=order.pk).consumer_id == consumer.pk
    assert CreditOrder.objects.count() == 1


def test_confirming_twice_opens_one_order_and_lands_on_the_same_result(listing, consumer):
    client = logged_in(consumer)
    order = place_from_catalogue(client, listing)
    url = reverse("pay:confirm", args=[order.confirmation_token])

    first = client.post(url, {"consent": "on"})
    second = client.post(url, {"consent": "on"})

    assert first["Location"] == second["Location"] == reverse("pay:result", args=[order.pk])
    assert CreditOrder.objects.filter(consumer=consumer).count() == 1
    assert OrderEvent.objects.filter(order=order, to_status=S.ACTIVE).count() == 1
    assert AdmissionDecision.objects.filter(consumer=consumer).count() == 1
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("20.00")


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_confirms_hold_the_limit_once(listing, consumer):
    order = api_order(listing, consumer=consumer)
    url = reverse("pay:confirm", args=[order.confirmation_token])
    clients = [logged_in(consumer), logged_in(consumer)]

    results = run_concurrently(*[lambda c=c: c.post(url, {"consent": "on"}) for c in clients])

    assert [r.status_code for r in results] == [302, 302]
    assert {r["Location"] for r in results} == {reverse("pay:result", args=[order.pk])}
    assert OrderEvent.objects.filter(order=order, to_status=S.ACTIVE).count() == 1
    assert CreditProfile.objects.get(consumer=consumer).open_exposure_amount == D("20.00")


def test_csrf_is_enforced_on_confirm(listing, consumer):
    order = api_order(listing)
    client = Client(enforce_csrf_checks=True)
    client.force_login(consumer.user)
    before = snapshot(order)

    response = client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    assert response.status_code == 403
    assert snapshot(order) == before


def test_someone_elses_result_page_is_a_404(listing, consumer):
    client = logged_in(consumer)
    order = place_from_catalogue(client, listing)
    client.post(reverse("pay:confirm", args=[order.confirmation_token]), {"consent": "on"})

    assert logged_in(ConsumerFactory()).get(reverse("pay:result", args=[order.pk])).status_code == 404


# --------------------------------------------------------------------------- catalogue


def test_catalogue_filters_by_scenario_city_and_search():
    hangzhou = MerchantFactory(city="杭州", display_name="西湖充电")
    shanghai = MerchantFactory(city="上海", display_name="浦东快递")
    charging = ListingFactory(merchant=hangzhou, title="电动车充电桩 A")
    express = ListingFactory(
        merchant=shanghai,
        title="先寄后付快递",
        scenario=Scenario.EXPRESS_DELIVERY,
        pricing_rule={
            "kind": "express",
            "first_weight_kg": "1",
            "first_weight_fee": "12.00",
            "additional_per_kg": "2.00",
        },
    )
    paused = ListingFactory(merchant=hangzhou, title="暂停的服务", status="paused")
    client = Client()

    def titles(**query) -> set[str]:
        page = client.get(reverse("shop:index"), query).content.decode()
        return {t for t in (charging.title, express.title, paused.title) if t in page}

    assert titles() == {charging.title, express.title}
    assert titles(scenario=Scenario.EXPRESS_DELIVERY) == {express.title}
    assert titles(city="杭州") == {charging.title}
    assert titles(q="浦东") == {express.title}
    assert titles(q="充电桩") == {charging.title}
    assert "¥12.00 for the first 1 kg, then ¥2.00/kg" in client.get(reverse("shop:index")).content.decode()


def test_catalogue_speaks_plain_chinese_prices_by_default(listing, settings):
    settings.LANGUAGE_CODE = "zh-hans"

    page = Client().get(reverse("shop:index")).content.decode()

    assert "¥1.00/小时，不足1小时按1小时计，每24小时封顶¥10.00" in page
    assert "先享" in page


def test_catalogue_htmx_search_returns_only_the_results(listing):
    response = Client().get(reverse("shop:index"), {"q": "充电"}, headers={"HX-Request": "true"})

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="results">')
    assert "<html" not in body and listing.title in body


def test_a_paused_listing_page_is_a_404(listing):
    listing.status = "paused"
    listing.save()

    assert Client().get(reverse("shop:listing", args=[listing.pk])).status_code == 404


def test_the_button_asks_an_anonymous_visitor_to_log_in(listing):
    client = Client()
    page = client.get(reverse("shop:listing", args=[listing.pk])).content.decode()
    assert "Log in to use pay later" in page

    response = client.post(reverse("shop:order", args=[listing.pk]), {"nonce": "0123456789abcdef"})

    assert response["Location"].startswith(reverse("accounts:login"))
    assert CreditOrder.objects.count() == 0


def test_double_clicking_the_button_places_one_order(listing, consumer):
    client = logged_in(consumer)
    nonce = nonce_of(client.get(reverse("shop:listing", args=[listing.pk])).content)

    first = client.post(reverse("shop:order", args=[listing.pk]), {"nonce": nonce})
    second = client.post(reverse("shop:order", args=[listing.pk]), {"nonce": nonce})

    order = CreditOrder.objects.get()
    assert first["Location"] == second["Location"] == reverse("pay:confirm", args=[order.confirmation_token])
    assert (order.consumer_id, order.out_order_no) == (consumer.pk, f"SHOP-{consumer.pk}-{nonce}")


def test_a_forged_nonce_places_nothing(listing, consumer):
    response = logged_in(consumer).post(reverse("shop:order", args=[listing.pk]), {"nonce": "../../x"})

    assert response.status_code == 400
    assert "This page has expired; open the service again." in response.content.decode()
    assert CreditOrder.objects.count() == 0


# --------------------------------------------------------------------------- standing agreements


@pytest.fixture
def agreement_listing(merchant):
    return ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)


def signup_link(listing, **extra) -> AgreementSignup:
    return agreement_signup_create(
        actor=None, merchant=listing.merchant, listing=listing, out_agreement_no="AG-1", **extra
    )


def test_a_sign_up_link_signs_the_agreement_once(agreement_listing, consumer):
    signup = signup_link(agreement_listing)
    client = logged_in(consumer)
    url = reverse("pay:agreement", args=[signup.token])
    page = client.get(url).content.decode()
    assert "Authorise" in page and 'name="consent"' in page and "checked" not in page

    refused = client.post(url, {})
    assert refused.status_code == 400
    assert not Agreement.objects.exists()

    response = client.post(url, {"consent": "on"})

    assert "Pay later is open" in response.content.decode()
    agreement = Agreement.objects.get()
    signup.refresh_from_db()
    assert (agreement.consumer_id, agreement.status) == (consumer.pk, AgreementStatus.VALID)
    assert (signup.status, signup.agreement_id) == (AgreementSignupStatus.SIGNED, agreement.pk)
    assert client.get(url)["Location"] == reverse("me:agreements")
    assert logged_in(ConsumerFactory()).get(url).status_code == 404


def test_a_declined_sign_up_shows_the_reasons_and_signs_nothing(agreement_listing):
    consumer = ConsumerFactory(profile__score=500)
    signup = signup_link(agreement_listing)

    response = logged_in(consumer).post(reverse("pay:agreement", args=[signup.token]), {"consent": "on"})

    page = response.content.decode()
    assert "Cannot open for now" in page
    assert "Your credit score is below what this service requires" in page
    assert not Agreement.objects.exists()
    signup.refresh_from_db()
    assert signup.status == AgreementSignupStatus.PENDING


def test_an_expired_sign_up_link_is_refused(agreement_listing, consumer):
    signup = signup_link(agreement_listing)
    AgreementSignup.objects.filter(pk=signup.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = logged_in(consumer).post(reverse("pay:agreement", args=[signup.token]), {"consent": "on"})

    assert response.status_code == 410
    assert not Agreement.objects.exists()


def test_a_test_mode_link_cannot_be_signed_by_a_real_consumer(agreement_listing, consumer):
    signup = signup_link(agreement_listing, livemode=False)

    response = logged_in(consumer).post(reverse("pay:agreement", args=[signup.token]), {"consent": "on"})

    assert response.status_code == 400
    assert "This sign-up link cannot be used with this account." in response.content.decode()
    assert not Agreement.objects.exists()


def test_an_agreement_listing_is_signed_from_the_catalogue(agreement_listing, consumer):
    client = logged_in(consumer)
    page = client.get(reverse("shop:listing", args=[agreement_listing.pk])).content.decode()
    assert reverse("shop:sign", args=[agreement_listing.pk]) in page

    client.post(reverse("shop:sign", args=[agreement_listing.pk]), {"consent": "on"})

    assert Agreement.objects.get().consumer_id == consumer.pk


def test_a_staff_user_is_told_the_pages_are_for_consumers(listing):
    client = Client()
    client.force_login(UserFactory(is_staff=True))

    response = client.get(reverse("me:home"))

    assert response.status_code == 403
    assert "not a consumer account" in response.content.decode()
