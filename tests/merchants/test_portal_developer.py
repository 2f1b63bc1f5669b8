"""Merchant portal: developer settings — API keys, webhook endpoints, secret rotation, delivery log, redelivery."""

import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from merchants.choices import ApiKeyMode, MemberRole, MerchantStatus, WebhookDeliveryStatus
from merchants.models import ApiKey, MerchantActivity, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from merchants.portal.developer import url_for_log
from merchants.selectors import api_key_get_by_token
from merchants.services import api_key_create, webhook_endpoint_create
from merchants.webhooks import decrypt_secret
from tests.factories import MerchantMemberFactory

pytestmark = pytest.mark.django_db

HOOK_URL = "http://127.0.0.1:9/hooks"  # an IP literal: nothing is resolved or contacted


@pytest.fixture(autouse=True)
def _private_targets(settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def owner(client):
    member = MerchantMemberFactory(role=MemberRole.OWNER)
    client.force_login(member.user)
    return member


def _secret(response, pattern):
    match = re.search(pattern, response.content.decode())
    assert match, "the secret is shown"
    return match.group(0)


def _delivery(endpoint, status=WebhookDeliveryStatus.FAILED, attempts=2):
    event = WebhookEvent.objects.create(
        uuid=uuid.uuid4(),
        merchant=endpoint.merchant,
        type="order.completed",
        livemode=endpoint.livemode,
        ordering_key="order:1",
        payload={"id": 1},
    )
    delivery = WebhookDelivery.objects.create(
        event=event,
        endpoint=endpoint,
        ordering_key="order:1",
        status=status,
        attempts=attempts,
        next_attempt_at=timezone.now() if status == WebhookDeliveryStatus.PENDING else None,
    )
    for number in range(1, attempts + 1):
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, started_at=timezone.now(), response_status=500, error="HTTP 500"
        )
    return delivery


def test_owner_sees_developer_page_with_docs_link_and_test_mode_notice(client):
    member = MerchantMemberFactory(role=MemberRole.OWNER, merchant__status=MerchantStatus.SUBMITTED)
    client.force_login(member.user)
    page = client.get(reverse("merchant:developer")).content.decode()
    assert reverse("api-docs") in page and 'id="test-mode-notice"' in page


def test_approved_merchant_has_no_test_mode_notice(client, owner):
    assert 'id="test-mode-notice"' not in client.get(reverse("merchant:developer")).content.decode()


@pytest.mark.parametrize("role", [MemberRole.OPERATOR, MemberRole.FINANCE, MemberRole.VIEWER])
def test_developer_pages_refuse_other_roles(client, role):
    member = MerchantMemberFactory(role=role)
    key, _token = api_key_create(actor=None, merchant=member.merchant, mode=ApiKeyMode.TEST)
    endpoint, _secret_value = webhook_endpoint_create(
        actor=None, merchant=member.merchant, url=HOOK_URL, event_types=["order.*"]
    )
    client.force_login(member.user)
    assert client.get(reverse("merchant:developer")).status_code == 403
    assert client.post(reverse("merchant:api_key_create"), {"mode": "test"}).status_code == 403
    assert client.post(reverse("merchant:api_key_revoke", args=[key.pk])).status_code == 403
    assert client.get(reverse("merchant:webhook_edit", args=[endpoint.pk])).status_code == 403
    assert client.post(reverse("merchant:webhook_rotate", args=[endpoint.pk])).status_code == 403
    assert client.get(reverse("merchant:webhook_deliveries", args=[endpoint.pk])).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None and ApiKey.objects.count() == 1


def test_other_merchants_keys_endpoints_and_deliveries_are_404(client, owner):
    stranger = MerchantMemberFactory(role=MemberRole.OWNER)
    key, _token = api_key_create(actor=None, merchant=stranger.merchant, mode=ApiKeyMode.TEST)
    endpoint, secret = webhook_endpoint_create(
        actor=None, merchant=stranger.merchant, url=HOOK_URL, event_types=["order.*"]
    )
    delivery = _delivery(endpoint)
    assert client.post(reverse("merchant:api_key_revoke", args=[key.pk])).status_code == 404
    assert client.get(reverse("merchant:webhook_edit", args=[endpoint.pk])).status_code == 404
    assert client.post(reverse("merchant:webhook_rotate", args=[endpoint.pk])).status_code == 404
    assert client.get(reverse("merchant:webhook_deliveries", args=[endpoint.pk])).status_code == 404
    assert client.post(reverse("merchant:webhook_redeliver", args=[delivery.pk])).status_code == 404
    key.refresh_from_db()
    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert key.revoked_at is None and decrypt_secret(endpoint.secret_encrypted) == secret
    assert delivery.status == WebhookDeliveryStatus.FAILED


def test_key_created_shown_once_then_revoked(client, owner):
    response = client.post(reverse("merchant:api_key_create"), {"mode": "test", "label": "充电桩后台"})
    assert response.status_code == 200
    token = _secret(response, r"sk_test_[0-9A-Za-z]{12}_[0-9A-Za-z]{40}")
    key = ApiKey.objects.get(merchant=owner.merchant)
    assert api_key_get_by_token(token=token) == key and key.label == "充电桩后台"
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    page = client.get(reverse("merchant:developer")).content.decode()
    assert key.prefix in page and token not in page  # listed by prefix, the secret never again

    client.post(reverse("merchant:api_key_revoke", args=[key.pk]))
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == owner.user
    assert list(MerchantActivity.objects.filter(merchant=owner.merchant).values_list("action", flat=True)) == [
        "api_key.revoke",
        "api_key.create",
    ]


def test_live_key_refused_before_approval_with_message(client):
    member = MerchantMemberFactory(role=MemberRole.OWNER, merchant__status=MerchantStatus.SUBMITTED)
    client.force_login(member.user)
    response = client.post(reverse("merchant:api_key_create"), {"mode": "live"})
    assert response.status_code == 200
    assert "cannot get a live key" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_webhook_create_edit_rotate(client, owner):
    form_page = client.get(reverse("merchant:webhook_create"))
    assert (
        form_page.status_code == 200 and 'value="order.*" id="id_event_types_1" checked' in form_page.content.decode()
    )
    response = client.post(
        reverse("merchant:webhook_create"),
        {"url": HOOK_URL, "description": "ERP", "event_types": ["order.*", "refund.*"], "livemode": "1"},
    )
    assert response.status_code == 200
    secret = _secret(response, r"whsec_[A-Za-z0-9+/=]+")
    endpoint = WebhookEndpoint.objects.get(merchant=owner.merchant)
    assert endpoint.event_types == ["order.*", "refund.*"] and endpoint.livemode is True
    assert decrypt_secret(endpoint.secret_encrypted) == secret

    edit = reverse("merchant:webhook_edit", args=[endpoint.pk])
    assert client.get(edit).status_code == 200
    response = client.post(edit, {"url": HOOK_URL + "/v2", "description": "ERP", "event_types": ["charge.*"]})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == HOOK_URL + "/v2" and endpoint.event_types == ["charge.*"] and endpoint.is_active is False

    rotated = client.post(reverse("merchant:webhook_rotate", args=[endpoint.pk]))
    new_secret = _secret(rotated, r"whsec_[A-Za-z0-9+/=]+")
    endpoint.refresh_from_db()
    assert new_secret != secret and decrypt_secret(endpoint.secret_encrypted) == new_secret


def test_activity_log_keeps_no_credentials_or_query_of_webhook_urls(client, owner):
    secret_url = "http://127.0.0.1:9/hooks?token=abc123"
    response = client.post(
        reverse("merchant:webhook_create"),
        {"url": secret_url, "description": "ERP", "event_types": ["order.*"], "livemode": "1"},
    )
    assert response.status_code == 200, response.context["form"].errors if response.context else ""
    endpoint = WebhookEndpoint.objects.get(merchant=owner.merchant)
    client.post(
        reverse("merchant:webhook_edit", args=[endpoint.pk]),
        {"url": secret_url.replace("/hooks", "/v2"), "description": "ERP", "event_types": ["order.*"]},
    )
    client.post(reverse("merchant:webhook_rotate", args=[endpoint.pk]))
    lines = MerchantActivity.objects.filter(merchant=owner.merchant, action__startswith="webhook.")
    targets = sorted(lines.values_list("target", flat=True))
    assert targets == ["http://127.0.0.1:9/hooks", "http://127.0.0.1:9/v2", "http://127.0.0.1:9/v2"]
    assert not any("abc123" in str(line.detail) for line in lines)
    # User-info is refused by the URL check already; the log helper drops it all the same.
    assert url_for_log("https://erp:s3cret@hooks.example.com:8443/in?k=v#f") == "https://hooks.example.com:8443/in"
    assert url_for_log("http://[::1]:9/x") == "http://[::1]:9/x"


def test_webhook_form_errors_keep_input(client, owner):
    response = client.post(reverse("merchant:webhook_create"), {"url": "ftp://example.com/x", "livemode": "0"})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "url" in errors and "event_types" in errors
    assert 'value="ftp://example.com/x"' in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_delivery_log_and_redeliver(client, owner):
    endpoint, _secret_value = webhook_endpoint_create(
        actor=None, merchant=owner.merchant, url=HOOK_URL, event_types=["order.*"]
    )
    failed = _delivery(endpoint)
    pending = _delivery(endpoint, status=WebhookDeliveryStatus.PENDING, attempts=1)
    page = client.get(reverse("merchant:webhook_deliveries", args=[endpoint.pk])).content.decode()
    assert "order.completed" in page and "HTTP 500" in page
    assert reverse("merchant:webhook_redeliver", args=[failed.pk]) in page
    assert reverse("merchant:webhook_redeliver", args=[pending.pk]) not in page

    client.post(reverse("merchant:webhook_redeliver", args=[failed.pk]))
    failed.refresh_from_db()
    assert failed.status == WebhookDeliveryStatus.PENDING and failed.attempts == 0
    assert failed.redelivered_by == owner.user
    # A pending delivery is on its way already: refused, unchanged.
    client.post(reverse("merchant:webhook_redeliver", args=[pending.pk]))
    pending.refresh_from_db()
    assert pending.attempts == 1 and pending.redelivered_at is None


def _count_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_developer_page_queries_do_not_grow_with_keys_and_endpoints(client, owner):
    def add(n):
        for _ in range(n):
            api_key_create(actor=owner.user, merchant=owner.merchant, mode=ApiKeyMode.TEST)
            webhook_endpoint_create(actor=None, merchant=owner.merchant, url=HOOK_URL, event_types=["order.*"])

    add(2)
    few = _count_queries(client, reverse("merchant:developer"))
    add(18)
    assert _count_queries(client, reverse("merchant:developer")) == few


def test_delivery_log_queries_do_not_grow_with_deliveries(client, owner):
    endpoint, _secret_value = webhook_endpoint_create(
        actor=None, merchant=owner.merchant, url=HOOK_URL, event_types=["order.*"]
    )
    for _ in range(2):
        _delivery(endpoint)
    url = reverse("merchant:webhook_deliveries", args=[endpoint.pk])
    few = _count_queries(client, url)
    for _ in range(18):
        _delivery(endpoint, attempts=3)
    assert _count_queries(client, url) == few
