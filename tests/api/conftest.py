"""Fixtures of the merchant API tests: two merchants with keys, listings, consumers and an HTTP client."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from bnpl.services import agreement_sign
from merchants.choices import ConfirmMode, MerchantCategory
from merchants.services import api_key_create
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory


@dataclass
class Api:
    """A merchant's system calling the API with one key (every POST gets a fresh Idempotency-Key)."""

    client: Client
    token: str

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str):
        return self.client.get(path, params or {}, headers=self.headers(headers))

    def post(self, path: str, body: Any = None, *, key: Any = None, raw: str | None = None, **headers: str):
        extra = dict(headers)
        if key is not False:
            extra["Idempotency-Key"] = key or str(uuid.uuid4())
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(path, data=data, content_type="application/json", headers=self.headers(extra))

    def patch(self, path: str, body: Any, **headers: str):
        return self.client.patch(
            path, data=json.dumps(body), content_type="application/json", headers=self.headers(headers)
        )


def make_api(merchant, mode: str = "live") -> Api:
    _key, token = api_key_create(actor=None, merchant=merchant, mode=mode, label=f"{mode} key")
    return Api(client=Client(), token=token)


def error_of(response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "fields"} <= set(body["error"]), body
    return body["error"]


@pytest.fixture
def merchant_a(db):
    return MerchantFactory(categories=[MerchantCategory.EBIKE_CHARGING.value, MerchantCategory.EXPRESS_DELIVERY.value])


@pytest.fixture
def merchant_b(db):
    return MerchantFactory()


@pytest.fixture
def api_a(merchant_a) -> Api:
    return make_api(merchant_a)


@pytest.fixture
def api_b(merchant_b) -> Api:
    return make_api(merchant_b)


@pytest.fixture
def test_api_a(merchant_a) -> Api:
    return make_api(merchant_a, "test")


@pytest.fixture
def each_time_listing(merchant_a):
    return ListingFactory(merchant=merchant_a, confirm_mode=ConfirmMode.EACH_TIME)


@pytest.fixture
def agreement_listing_a(merchant_a):
    return ListingFactory(merchant=merchant_a, confirm_mode=ConfirmMode.AGREEMENT)


@pytest.fixture
def live_consumer(db):
    return ConsumerFactory()


@pytest.fixture
def sandbox_consumer(db):
    return ConsumerFactory(is_sandbox=True)


@pytest.fixture
def agreement_a(agreement_listing_a, live_consumer):
    return agreement_sign(actor=None, consumer=live_consumer, listing=agreement_listing_a)


@pytest.fixture
def active_order(api_a, agreement_a, agreement_listing_a, live_consumer):
    """An active order of merchant A under a standing agreement, created through the API."""
    from bnpl.models import CreditOrder

    response = api_a.post(
        "/api/v1/orders",
        {"listing_id": agreement_listing_a.pk, "out_order_no": "A-ACTIVE-1", "consumer_id": live_consumer.pk},
    )
    assert response.status_code == 201, response.content
    return CreditOrder.objects.get(pk=response.json()["id"])
