"""Fault: the merchant's webhook receiver is down for hours.

A real HTTP server on 127.0.0.1 answers 503 for the first 2½ hours, then 200. Two orders have events queued
before and during the outage. The real delivery job (``merchants.tasks.deliver_webhooks``) runs under a
controlled clock, jumping to each next due time, across the whole retry schedule. The receiver checks every
request with the ``standardwebhooks`` library as it arrives (at the travelled time, so the timestamp
tolerance is really exercised).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.db.models import Min
from django.utils import timezone
from standardwebhooks import Webhook

from merchants.choices import WebhookDeliveryStatus
from merchants.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from merchants.services import webhook_endpoint_create, webhook_event_enqueue
from merchants.tasks import deliver_webhooks
from merchants.webhooks import RETRY_DELAYS_S
from tests.factories import MerchantFactory

DOWN_FOR = timedelta(hours=2, minutes=30)


@dataclass
class Receipt:
    at: datetime
    webhook_id: str
    body: dict
    status: int
    verified: bool


@dataclass
class FlakyReceiver:
    """Answers 503 until ``up_at`` (read from the travelled clock), 200 afterwards; verifies each signature."""

    up_at: datetime | None = None
    secret: str = ""
    receipts: list[Receipt] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def start(self) -> FlakyReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(raw, headers)
                    verified = True
                except Exception:
                    verified = False
                now = timezone.now()
                status = 503 if receiver.up_at is None or now < receiver.up_at else 200
                with receiver.lock:
                    receiver.receipts.append(
                        Receipt(now, headers.get("webhook-id", ""), json.loads(raw), status, verified)
                    )
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"down for maintenance")

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    receiver = FlakyReceiver().start()
    yield receiver
    receiver.stop()


def _enqueue(merchant, order_no: int, event_type: str, seq: int) -> WebhookEvent:
    event = webhook_event_enqueue(
        merchant_id=merchant.pk,
        event_type=event_type,
        payload={"order_id": order_no, "seq": seq},
        ordering_key=f"order:{order_no}",
    )
    assert event is not None
    return event


def _sweep_until(clock, until: datetime) -> int:
    """Run the delivery job, jumping the clock to each next due delivery, up to ``until``; returns the runs."""
    runs = 0
    while True:
        attempted = deliver_webhooks(run_for_s=0)  # one sweep of the real job per tick
        runs += 1
        if attempted:
            continue  # sweep again at the same instant: a later event of an order may be unblocked now
        # Nothing due: jump to the next retry (deliveries held behind an earlier event are due already).
        pending = WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.PENDING)
        due = pending.filter(next_attempt_at__gt=timezone.now()).aggregate(t=Min("next_attempt_at"))["t"]
        if due is None or due > until:
            clock.move_to(until)
            return runs
        clock.move_to(due)


@pytest.mark.django_db
def test_receiver_down_for_hours_retries_on_schedule_then_delivers_in_order(receiver):
    merchant = MerchantFactory()
    endpoint, secret = webhook_endpoint_create(actor=None, merchant=merchant, url=receiver.url, event_types=["order.*"])
    receiver.secret = secret
    start = timezone.now().replace(microsecond=0)
    receiver.up_at = start + DOWN_FOR

    with time_machine.travel(start, tick=False) as clock:
        # Order 1: three events queued before the outage is noticed.
        first = [_enqueue(merchant, 1, t, i) for i, t in enumerate(["order.active", "order.completed", "order.paid"])]
        runs = _sweep_until(clock, start + timedelta(hours=1))  # order 1's first event keeps failing
        # An hour into the outage, order 2 happens (two events), and order 1 gets a refund.
        second = [_enqueue(merchant, 2, t, i) for i, t in enumerate(["order.active", "order.cancelled"])]
        first.append(_enqueue(merchant, 1, "order.refunded", 3))
        runs += _sweep_until(clock, start + timedelta(hours=6))

    events = first + second
    deliveries = {d.event_id: d for d in WebhookDelivery.objects.filter(endpoint=endpoint)}
    assert len(deliveries) == len(events)
    assert not WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.PENDING).exists()
    # 1. Everything arrived once the receiver was back; nothing was given up.
    assert {d.status for d in deliveries.values()} == {WebhookDeliveryStatus.SUCCEEDED}
    assert all(r.verified for r in receiver.receipts), "a request failed Standard Webhooks verification"
    assert all(r.status == 503 for r in receiver.receipts if r.at < receiver.up_at)
    assert all(r.status == 200 for r in receiver.receipts if r.at >= receiver.up_at)
    assert receiver.up_at <= max(r.at for r in receiver.receipts) <= receiver.up_at + timedelta(hours=1)

    # 2. Each event's attempts kept one webhook-id and followed the documented schedule exactly.
    by_id = {e.webhook_id: e for e in events}
    assert {r.webhook_id for r in receiver.receipts} == set(by_id)
    for event in events:
        attempts = list(WebhookAttempt.objects.filter(delivery=deliveries[event.pk]).order_by("number"))
        seen = [r for r in receiver.receipts if r.webhook_id == event.webhook_id]
        assert len(seen) == len(attempts) == deliveries[event.pk].attempts
        assert [r.status for r in seen][-1] == 200 and [r.status for r in seen].count(200) == 1
        gaps = [int((b.started_at - a.started_at).total_seconds()) for a, b in itertools.pairwise(attempts)]
        assert gaps == list(RETRY_DELAYS_S[1 : len(attempts)]), (event.type, event.ordering_key, gaps)
    # The first event of each order went through most of the schedule (a real multi-hour outage).
    assert deliveries[first[0].pk].attempts == 10  # 0 s … 3 h 04 min: the last scheduled attempt succeeded
    assert deliveries[second[0].pk].attempts == 8  # from 1 h: … 2 h 34 min

    # 3. Per order, the receiver saw events in creation order: no event before its predecessor succeeded.
    per_order: dict[int, list[Receipt]] = defaultdict(list)
    for receipt in receiver.receipts:
        per_order[receipt.body["data"]["order_id"]].append(receipt)
    for order_no, created in ((1, first), (2, second)):
        seqs = [r.body["data"]["seq"] for r in per_order[order_no]]
        assert seqs == sorted(seqs), (order_no, seqs)
        delivered = [r.body["data"]["seq"] for r in per_order[order_no] if r.status == 200]
        assert delivered == [e.payload["seq"] for e in created]
        for earlier, later in itertools.pairwise(created):
            ok_at = next(r.at for r in per_order[order_no] if r.webhook_id == earlier.webhook_id and r.status == 200)
            first_try = min(r.at for r in per_order[order_no] if r.webhook_id == later.webhook_id)
            assert first_try >= ok_at
    assert runs < 100  # the sweep is driven by due times, not by polling every second
