"""Admin for keys and webhooks (secrets shown once, actions through services) and the scheduled jobs."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from bnpl.schedules import JOBS
from merchants.models import ApiKey, WebhookDelivery, WebhookEndpoint
from merchants.selectors import api_key_get_by_token
from merchants.services import webhook_endpoint_create
from merchants.tasks import deliver_webhooks
from tests.api.receiver import Receiver


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_admin_creates_a_key_and_shows_the_secret_once(admin_client, merchant_a, staff_user):
    response = admin_client.post(
        "/admin/merchants/apikey/add/", {"merchant": merchant_a.pk, "mode": "live", "label": "POS"}
    )

    assert response.status_code == 302
    key = ApiKey.objects.get()
    (message,) = [m for m in _messages(response) if "will not be shown again" in m]
    secret = message.rsplit(" ", 1)[1]
    assert secret.startswith(f"{key.prefix}_")
    assert api_key_get_by_token(token=secret) == key
    assert key.created_by == staff_user
    shown_once = admin_client.get(f"/admin/merchants/apikey/{key.pk}/change/").content.decode()
    page = admin_client.get(f"/admin/merchants/apikey/{key.pk}/change/").content.decode()
    assert secret in shown_once  # the pending message, displayed on the page after the redirect
    assert key.prefix in page
    assert secret not in page


def test_admin_refuses_a_live_key_for_an_unapproved_merchant(admin_client, db):
    from merchants.choices import MerchantStatus
    from tests.factories import MerchantFactory

    merchant = MerchantFactory(status=MerchantStatus.SUBMITTED)

    response = admin_client.post("/admin/merchants/apikey/add/", {"merchant": merchant.pk, "mode": "live"})

    assert response.status_code == 302
    assert ApiKey.objects.count() == 0
    assert "cannot get a live key" in _messages(response)[0]


def test_admin_revokes_keys(admin_client, api_a):
    key = ApiKey.objects.get()

    admin_client.post("/admin/merchants/apikey/", {"action": "revoke_selected", "_selected_action": [key.pk]})

    assert ApiKey.objects.get().revoked_at is not None
    assert api_a.get("/api/v1/orders").status_code == 401


def test_admin_creates_a_webhook_endpoint_and_shows_the_secret_once(admin_client, merchant_a, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    response = admin_client.post(
        "/admin/merchants/webhookendpoint/add/",
        {
            "merchant": merchant_a.pk,
            "url": "http://127.0.0.1:9/hooks",
            "event_types": "order.*,agreement.signed",
            "livemode": "on",
            "is_active": "on",
            "description": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    (message,) = [m for m in _messages(response) if "will not be shown again" in m]
    assert message.rsplit(" ", 1)[1].startswith("whsec_")
    assert endpoint.event_types == ["order.*", "agreement.signed"]


def test_admin_refuses_a_private_webhook_target(admin_client, merchant_a, settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = admin_client.post(
        "/admin/merchants/webhookendpoint/add/",
        {"merchant": merchant_a.pk, "url": "http://10.0.0.5/hooks", "event_types": "order.*", "is_active": "on"},
    )

    assert response.status_code == 200
    assert "private, loopback or link-local" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 0


def test_admin_redelivers_failed_deliveries(admin_client, merchant_a, settings, api_a, active_order):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = Receiver().start()
    try:
        webhook_endpoint_create(actor=None, merchant=merchant_a, url=receiver.url, event_types=["order.*"])
        api_a.post(f"/api/v1/orders/{active_order.pk}/cancel", {"reason": "x"})
        WebhookDelivery.objects.update(status="failed", next_attempt_at=None)
        ids = list(WebhookDelivery.objects.values_list("pk", flat=True))

        admin_client.post(
            "/admin/merchants/webhookdelivery/", {"action": "redeliver_selected", "_selected_action": ids}
        )
        attempted = deliver_webhooks(run_for_s=0.0)
        attempted += deliver_webhooks(run_for_s=0.0)
    finally:
        receiver.stop()

    assert attempted == 1  # only order.cancelled happened after the endpoint existed
    assert len(receiver.received) == 1
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_jobs_are_declared():
    by_name = {job.name: job for job in JOBS}

    assert by_name["deliver-webhooks"].func == "merchants.tasks.deliver_webhooks"
    assert by_name["deliver-webhooks"].minutes == 1
    assert by_name["purge-idempotency-records"].kwargs == {"older_than_hours": 48}
