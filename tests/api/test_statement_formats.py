"""Statement download through the API: ``?format=csv|xlsx`` on the statement route, errors in the API format."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from bnpl.settlement import XLSX_CONTENT_TYPE, settle_merchants
from tests.api.conftest import error_of
from tests.bnpl.partb_helpers import charged_order
from tests.factories import ListingFactory

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def batch_id(merchant_a, live_consumer):
    listing = ListingFactory(merchant=merchant_a, max_amount=D("500.00"))
    charged_order(listing, live_consumer, amount="40.00")
    charged_order(listing, live_consumer, amount="60.00")
    [batch_id] = settle_merchants(business_date=timezone.localdate())
    return batch_id


def test_xlsx_statement_download_sums_to_the_batch(api_a, batch_id):
    response = api_a.get(f"/api/v1/settlements/{batch_id}/statement", {"format": "xlsx"})

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == XLSX_CONTENT_TYPE
    assert response["Content-Disposition"].endswith('.xlsx"')
    rows = [r for r in load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True)]
    start = next(i for i, r in enumerate(rows) if r[0] == "Order id")
    lines = [r for r in rows[start + 1 :] if r[3] not in (None, "Total")]
    total = next(r for r in rows if r[3] == "Total")
    assert len(lines) == 4
    assert sum(D(str(r[9])) for r in lines).quantize(D("0.01")) == D("99.40")
    assert D(str(total[9])).quantize(D("0.01")) == D("99.40")


def test_csv_is_the_default_on_both_routes(api_a, batch_id):
    for path in (f"/api/v1/settlements/{batch_id}/statement", f"/api/v1/settlements/{batch_id}/statement.csv"):
        response = api_a.get(path)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert response.content.startswith(b"\xef\xbb\xbf")
    legacy_xlsx = api_a.get(f"/api/v1/settlements/{batch_id}/statement.csv", {"format": "xlsx"})
    assert legacy_xlsx["Content-Type"] == XLSX_CONTENT_TYPE


def test_unknown_format_and_other_merchant_are_refused_as_json(api_a, api_b, batch_id):
    bad = api_a.get(f"/api/v1/settlements/{batch_id}/statement", {"format": "pdf"})
    assert bad.status_code == 400
    error = error_of(bad)
    assert error["code"] == "validation_failed" and "format" in error["fields"]

    other = api_b.get(f"/api/v1/settlements/{batch_id}/statement", {"format": "xlsx"})
    assert other.status_code == 404
    assert error_of(other)["code"] == "not_found"


def test_each_key_mode_lists_and_downloads_only_its_own_batches(
    merchant_a, merchant_b, live_consumer, sandbox_consumer
):
    from tests.api.conftest import make_api

    charged_order(ListingFactory(merchant=merchant_a, max_amount=D("500.00")), live_consumer, amount="40.00")
    charged_order(ListingFactory(merchant=merchant_b, max_amount=D("500.00")), sandbox_consumer, amount="30.00")
    batch_ids = settle_merchants(business_date=timezone.localdate())
    live_batch = next(
        pk for pk in batch_ids if make_api(merchant_a).get(f"/api/v1/settlements/{pk}/statement").status_code == 200
    )
    test_batch = next(pk for pk in batch_ids if pk != live_batch)

    def listed(api) -> list[int]:
        return [row["id"] for row in api.get("/api/v1/settlements").json()["data"]]

    assert listed(make_api(merchant_a)) == [live_batch]
    assert listed(make_api(merchant_a, mode="test")) == []
    assert listed(make_api(merchant_b, mode="test")) == [test_batch]
    assert listed(make_api(merchant_b)) == []
    refused = make_api(merchant_a, mode="test").get(f"/api/v1/settlements/{live_batch}/statement")
    assert refused.status_code == 403 and error_of(refused)["code"] == "livemode_mismatch"
    assert make_api(merchant_b, mode="test").get(f"/api/v1/settlements/{test_batch}/statement").status_code == 200
