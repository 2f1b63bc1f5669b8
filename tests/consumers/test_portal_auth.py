"""Consumer log-in by phone, sign-up, log-out, throttling (django-axes), CSRF and the language switch."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from consumers.models import Consumer
from tests.consumers.portal_helpers import PASSWORD
from tests.factories import ConsumerFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    consumer = ConsumerFactory(phone="13812345678")
    consumer.user.set_password(PASSWORD)
    consumer.user.save()
    return consumer


def log_in(client: Client, phone: str, password: str, **extra):
    return client.post(reverse("accounts:login"), {"phone": phone, "password": password, **extra})


def test_log_in_by_phone_in_any_common_format(member):
    client = Client()

    response = log_in(client, "+86 138-1234-5678", PASSWORD, next="/me/orders/")

    assert response["Location"] == "/me/orders/"
    assert int(client.session[SESSION_KEY]) == member.user.pk


def test_a_next_address_off_the_site_is_ignored(member):
    response = log_in(Client(), member.phone, PASSWORD, next="https://evil.example.com/")

    assert response["Location"] == reverse("me:home")


def test_a_wrong_password_and_an_unknown_phone_get_the_same_answer(member):
    wrong = log_in(Client(), member.phone, "not-the-password")
    unknown = log_in(Client(), "13900000000", PASSWORD)

    for response in (wrong, unknown):
        assert response.status_code == 200
        assert "The mobile number or the password is wrong." in response.content.decode()
        assert SESSION_KEY not in response.wsgi_request.session
    assert 'value="13812345678"' in wrong.content.decode()


def test_a_staff_login_cannot_sign_in_as_a_consumer():
    UserFactory(username="13700000000")  # a login named like a phone, without a consumer row

    response = log_in(Client(), "13700000000", "demo1234")

    assert "The mobile number or the password is wrong." in response.content.decode()


def test_repeated_failures_lock_the_phone_from_that_address(member, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, member.phone, "wrong-password")

    locked = log_in(client, member.phone, PASSWORD)

    assert locked.status_code == 429
    assert "Too many failed log-in attempts" in locked.content.decode()
    assert SESSION_KEY not in client.session
    # Another address is not locked out of the same account.
    other = Client(REMOTE_ADDR="10.0.0.9")
    assert log_in(other, member.phone, PASSWORD).status_code == 302


def test_the_admin_login_still_works(staff_user):
    client = Client()

    response = client.post(
        reverse("admin:login"), {"username": "staff", "password": "demo1234", "next": reverse("admin:index")}
    )

    assert response["Location"] == reverse("admin:index")
    assert client.get(reverse("admin:index")).status_code == 200


def test_sign_up_logs_in_and_opens_the_account():
    client = Client()

    response = client.post(
        reverse("accounts:signup"),
        {"phone": "13600001111", "password": PASSWORD, "password_confirm": PASSWORD, "next": "/shop/"},
    )

    consumer = Consumer.objects.get(phone="13600001111")
    assert response["Location"] == "/shop/"
    assert int(client.session[SESSION_KEY]) == consumer.user.pk
    assert consumer.credit_profile.credit_limit_amount == 1000


def test_sign_up_errors_keep_what_was_typed(member):
    response = Client().post(
        reverse("accounts:signup"),
        {"phone": member.phone, "password": PASSWORD, "password_confirm": PASSWORD, "city": "苏州"},
    )

    page = response.content.decode()
    assert "This mobile number is already registered." in page
    assert f'value="{member.phone}"' in page and 'value="苏州"' in page
    assert Consumer.objects.count() == 1


def test_sign_up_is_rate_limited_per_address(settings):
    cache.clear()
    settings.CONSUMER_SIGNUP_RATE_LIMIT = 2
    for n in (1, 2):
        data = {"phone": f"1360000200{n}", "password": PASSWORD, "password_confirm": PASSWORD}
        assert Client().post(reverse("accounts:signup"), data).status_code == 302
    data = {"phone": "13600002003", "password": PASSWORD, "password_confirm": PASSWORD}
    response = Client().post(reverse("accounts:signup"), data)
    assert response.status_code == 429
    assert "Too many sign-up attempts" in response.content.decode()
    assert not Consumer.objects.filter(phone="13600002003").exists()
    # Another address is counted on its own.
    assert Client(REMOTE_ADDR="10.9.8.7").post(reverse("accounts:signup"), data).status_code == 302
    cache.clear()


def test_sign_up_limit_counts_the_forwarded_client_behind_a_trusted_proxy(settings):
    cache.clear()
    settings.CONSUMER_SIGNUP_RATE_LIMIT = 1
    settings.AXES_IPWARE_PROXY_COUNT = 1
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    proxy = {"REMOTE_ADDR": "10.0.0.1"}

    def sign_up(phone, forwarded):
        data = {"phone": phone, "password": PASSWORD, "password_confirm": PASSWORD}
        return Client(**proxy).post(reverse("accounts:signup"), data, headers={"X-Forwarded-For": forwarded})

    assert sign_up("13600003001", "198.51.100.7").status_code == 302
    # A second client behind the same proxy is not blocked by the first …
    assert sign_up("13600003002", "198.51.100.8").status_code == 302
    # … and a spoofed left-most entry does not give the first client a fresh address.
    assert sign_up("13600003003", "1.2.3.4, 198.51.100.7").status_code == 429
    cache.clear()


def test_logout_is_post_only(member):
    client = Client()
    client.force_login(member.user)

    assert client.get(reverse("accounts:logout")).status_code == 405
    assert client.post(reverse("accounts:logout"))["Location"] == reverse("shop:index")
    assert SESSION_KEY not in client.session


def test_csrf_is_enforced_on_login_and_portal_actions(member, listing):
    client = Client(enforce_csrf_checks=True)

    assert log_in(client, member.phone, PASSWORD).status_code == 403
    client.force_login(member.user)
    assert client.post(reverse("me:spend_cap"), {"amount": "100"}).status_code == 403
    assert client.post(reverse("shop:order", args=[listing.pk]), {"nonce": "0123456789abcdef"}).status_code == 403
    member.credit_profile.refresh_from_db()
    assert member.credit_profile.spend_cap_amount is None


def test_the_language_switch_turns_the_pages_english_or_chinese(settings, listing):
    settings.LANGUAGE_CODE = "zh-hans"
    client = Client()
    assert "先享后付" in client.get(reverse("shop:index")).content.decode()

    response = client.post(reverse("set_language"), {"language": "en", "next": "/shop/"})

    assert response["Location"] == "/shop/"
    page = client.get(reverse("shop:index")).content.decode()
    assert "Use first, pay after the service" in page and '<html lang="en">' in page
