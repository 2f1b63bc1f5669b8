"""The admin's second factor: a password alone does not let staff in, password + TOTP token does."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from bnpl.exceptions import DomainError
from bnpl.staff_otp import totp_current_token, totp_device_enrol
from tests.factories import UserFactory

PASSWORD = "s3cret-Passw0rd"


@pytest.fixture
def otp_required(settings):
    settings.BNPL_ADMIN_REQUIRE_OTP = True  # tests/conftest.py turns it off for the rest of the suite
    return settings


@pytest.fixture
def staff(db):
    user = UserFactory(username="ops", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def _login(client, **extra):
    return client.post(
        reverse("admin:login"),
        {"username": "ops", "password": PASSWORD, "next": reverse("admin:index"), **extra},
    )


def test_password_alone_is_refused_without_a_device(client, staff, otp_required):
    response = _login(client)
    assert response.status_code == 200  # the form again, with an error
    assert response.context["form"].errors
    assert client.get(reverse("admin:index")).status_code == 302


def test_a_password_session_without_verification_does_not_reach_the_admin(client, staff, otp_required):
    client.force_login(staff)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_wrong_token_is_refused(client, staff, otp_required):
    device = totp_device_enrol(actor=None, user=staff)
    wrong = f"{(int(totp_current_token(device)) + 1) % 1_000_000:06d}"
    response = _login(client, otp_device=device.persistent_id, otp_token=wrong)
    assert response.status_code == 200
    assert client.get(reverse("admin:index")).status_code == 302


def test_password_and_valid_token_let_staff_in(client, staff, otp_required):
    device = totp_device_enrol(actor=None, user=staff)
    # The person types username, password and token; the device need not be chosen.
    token = totp_current_token(device)
    response = _login(client, otp_token=token)
    assert response.status_code == 302, response.context["form"].errors if response.context else ""
    assert client.get(reverse("admin:index")).status_code == 200
    # A token is good once: replaying the same token in a second login fails (the same token, not the current
    # one again: a 30-second step may have passed meanwhile, and a new token would rightly be accepted).
    other = client.__class__()
    again = _login(other, otp_device=device.persistent_id, otp_token=token)
    assert again.status_code == 200


def test_login_page_asks_for_the_token(client, otp_required, db):
    assert b'name="otp_token"' in client.get(reverse("admin:login")).content


def test_enrolment_is_idempotent_and_replace_makes_a_new_secret(staff):
    first = totp_device_enrol(actor=None, user=staff)
    assert totp_device_enrol(actor=None, user=staff).pk == first.pk
    replaced = totp_device_enrol(actor=None, user=staff, replace=True)
    assert replaced.key != first.key
    assert list(TOTPDevice.objects.filter(user=staff)) == [replaced]


def test_non_staff_cannot_be_enrolled(db):
    with pytest.raises(DomainError):
        totp_device_enrol(actor=None, user=UserFactory(is_staff=False))


def test_command_prints_the_otpauth_uri_and_code_is_debug_only(staff, settings):
    out = io.StringIO()
    call_command("staff_totp", "enrol", "ops", stdout=out)
    device = TOTPDevice.objects.get(user=staff)
    assert device.config_url in out.getvalue() and out.getvalue().count("otpauth://totp/") == 1

    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("staff_totp", "code", "ops", stdout=io.StringIO())
    settings.DEBUG = True
    code = io.StringIO()
    call_command("staff_totp", "code", "ops", stdout=code)
    assert code.getvalue().strip() == totp_current_token(device)
