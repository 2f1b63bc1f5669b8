"""charge.* webhooks: written with the outcome, before the order's own event, the same from both record paths."""

from __future__ import annotations

import pytest
from django.utils import timezone

from bnpl import charging, charging_bulk
from bnpl.charging import charge_attempt_record, run_charges
from bnpl.models import ChargeRun
from merchants.models import WebhookEvent
from merchants.services import webhook_endpoint_create
from tests.bnpl.charging_helpers import due_order, fund
from tests.factories import ConsumerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribe(settings, listing):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True

    def make(*event_types: str) -> None:
        webhook_endpoint_create(
            actor=None, merchant=listing.merchant, url="http://127.0.0.1:9/hook", event_types=list(event_types)
        )

    return make


def events_of(order) -> list[tuple[str, dict]]:
    return [
        (event.type, event.payload)
        for event in WebhookEvent.objects.filter(ordering_key=f"order:{order.pk}").order_by("id")
    ]


def test_bulk_and_one_by_one_recording_announce_the_same_charge_then_the_payment(listing, subscribe):
    subscribe("charge.*", "order.*")
    people = [ConsumerFactory(), ConsumerFactory()]
    for person in people:
        fund(person)
    bulk_order, single_order = (due_order(listing, person) for person in people)
    items = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="w").pk, limit=10, now=timezone.now())
    results = {item.order_id: (item, charging._charge_one(charging.get_gateway(), item)[0]) for item in items}

    charging_bulk.record_batch([results[bulk_order.pk]])
    charge_attempt_record(attempt_id=results[single_order.pk][0].attempt_id, result=results[single_order.pk][1])

    for order in (bulk_order, single_order):
        events = events_of(order)
        assert [kind for kind, _p in events] == ["charge.succeeded", "order.paid"]
        charge = events[0][1]
        assert (charge["object"], charge["order_id"], charge["amount"], charge["status"]) == (
            "charge",
            order.pk,
            "5.00",
            "succeeded",
        )
        assert charge["reference"] and charge["finished_at"]

    def shape(payload: dict) -> dict:
        return {k: v for k, v in payload.items() if k not in {"id", "order_id", "out_order_no", "reference"}} | {
            "requested_at": None,
            "finished_at": None,
        }

    assert shape(events_of(bulk_order)[0][1]) == shape(events_of(single_order)[0][1])


def test_a_decline_is_announced_each_time_and_the_first_one_also_moves_the_order(listing, consumer, subscribe):
    subscribe("charge.*", "order.*")
    fund(consumer, balance="1.00")
    order = due_order(listing, consumer)
    run_charges(threads=1)
    order.refresh_from_db()
    order.next_attempt_at = timezone.now()
    order.save(update_fields=["next_attempt_at"])
    run_charges(threads=1)

    kinds = [kind for kind, _p in events_of(order)]
    assert kinds == ["charge.declined", "order.collecting", "charge.declined"]
    declined = events_of(order)[0][1]
    assert declined["decline_code"] == "insufficient_funds"
    assert declined["next_attempt_at"] is not None


def test_only_subscribers_of_charge_events_get_them(listing, consumer, subscribe):
    subscribe("order.*")
    fund(consumer)
    order = due_order(listing, consumer)
    run_charges(threads=1)
    assert [kind for kind, _p in events_of(order)] == ["order.paid"]


def test_recording_a_chunk_for_a_listening_merchant_costs_the_same_queries_for_2_or_12_orders(listing, subscribe):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    subscribe("charge.*", "order.*")

    def recorded_queries(n: int) -> int:
        people = [ConsumerFactory() for _ in range(n)]
        for person in people:
            fund(person)
        for person in people:
            due_order(listing, person)
        items = charging_bulk.claim_due(run_id=ChargeRun.objects.create(worker="w").pk, limit=50, now=timezone.now())
        pairs = [(item, charging._charge_one(charging.get_gateway(), item)[0]) for item in items]
        with CaptureQueriesContext(connection) as captured:
            tally, rest = charging_bulk.record_batch(pairs)
        assert (tally.succeeded, rest) == (n, [])
        return len(captured)

    recorded_queries(1)  # first chunk: creates the platform's and the merchant's ledger accounts
    small, large = recorded_queries(2), recorded_queries(12)
    assert WebhookEvent.objects.filter(type="charge.succeeded").count() == 15
    assert large == small
