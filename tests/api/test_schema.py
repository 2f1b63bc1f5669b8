"""The OpenAPI contract: the schema, the offline docs, and a schemathesis run against it (no 5xx, no lies)."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bnpl.services import agreement_sign
from merchants.choices import ConfirmMode
from tests.api.conftest import make_api
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory


def test_schema_is_openapi_3_and_documents_every_operation(client):
    response = client.get("/api/schema/", headers={"Accept": "application/json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {
        op["operationId"] for path in schema["paths"].values() for method, op in path.items() if method != "parameters"
    }
    # Part B (refunds, settlements) adds more; these must always be there.
    assert operations >= {
        "orders_list",
        "orders_create",
        "orders_retrieve",
        "orders_retrieve_by_out_order_no",
        "orders_usage_create",
        "orders_complete",
        "orders_cancel",
        "orders_sync",
        "usage_batch_create",
        "agreements_list",
        "agreements_retrieve",
        "agreements_close",
        "agreement_signups_create",
        "agreement_signups_retrieve",
        "listings_list",
        "listings_create",
        "listings_retrieve",
        "listings_update",
        "listings_pause",
        "listings_resume",
    }
    for path in schema["paths"].values():
        for method, operation in path.items():
            if method == "post":
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
                assert "Idempotency-Key" in names, operation["operationId"]
            examples = [
                media.get("examples")
                for response in [*operation["responses"].values(), operation.get("requestBody", {})]
                for media in response.get("content", {}).values()
            ]
            assert any(examples), f"{operation['operationId']} has no example"
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_docs_are_served_offline(client):
    swagger = client.get("/api/docs/")
    redoc = client.get("/api/redoc/")

    assert swagger.status_code == redoc.status_code == 200
    html = swagger.content.decode() + redoc.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn.jsdelivr.net" not in html
    assert "unpkg.com" not in html


# --------------------------------------------------------------------------- schemathesis


@pytest.fixture
def fuzz_headers(db, settings):
    """A merchant with data to hit: a live key, listings of both modes, an agreement and an order."""
    settings.BNPL_API_RATE_LIMIT_LIVE = 100_000
    merchant = MerchantFactory()
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    ListingFactory(merchant=merchant)
    consumer = ConsumerFactory()
    agreement_sign(actor=None, consumer=consumer, listing=listing)
    api = make_api(merchant)
    api.post("/api/v1/orders", {"listing_id": listing.pk, "out_order_no": "F-1", "consumer_id": consumer.pk})
    # Calls below go through the real WSGI application, which closes "old" connections when a request
    # starts and ends — that would close the test's transaction. Django's test client switches this off
    # around each of its own requests (and back on after), so switch it off after the last of those.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {"Authorization": f"Bearer {api.token}"}
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Loaded when the module is collected (the schema view needs no database); one test per operation.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case, fuzz_headers):
    case.call_and_validate(
        headers=fuzz_headers,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
