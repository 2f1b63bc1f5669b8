"""Benchmark of usage ingestion through the merchant API (not a test): events per second over HTTP.

    .venv/bin/python bench/usage_ingest.py --events 200000 --batch 1000 --clients 4

Runs in its own database (``bnpl_bench_usage`` on the server DATABASE_URL names, or on the embedded
server), which it drops and migrates first. It seeds one approved merchant with a live API key and
``--orders`` active orders under standing agreements (through the services), then starts gunicorn
with 2 sync workers on a free local port and has ``--clients`` threads POST ``/api/v1/usage/batch``
with ``--batch`` events each — every request with its own ``Idempotency-Key``, so the claim and the
stored response are part of what is measured. Bodies are built before the clock starts.

Afterwards it checks that the database holds exactly the events sent, and that replaying one batch
with its key returns the stored response without recording anything.

Figures go to stdout; the last line is JSON: ``{"events": N, "per_s": …, "p99_batch_ms": …}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)

BENCH_DB = "bnpl_bench_usage"


def prepare_database() -> None:
    """Drop and create the bench database; point this process and gunicorn at it, production-like."""
    use_bench_database(BENCH_DB)
    os.environ["DATABASE_CONN_MAX_AGE"] = "60"  # what a production deployment sets


def seed(n_orders: int) -> tuple[str, list[int]]:
    """A merchant with a live key and ``n_orders`` active orders (through the services); returns key, order ids."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bnpl.choices import ActorKind
    from bnpl.services import agreement_sign, credit_order_create
    from merchants.choices import ConfirmMode
    from merchants.services import api_key_create
    from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory

    merchant = MerchantFactory(display_name="bench usage")
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    order_ids = []
    for i in range(n_orders):
        consumer = ConsumerFactory()
        agreement_sign(actor=None, consumer=consumer, listing=listing)
        order = credit_order_create(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=listing,
            out_order_no=f"BENCH-{i}",
            consumer=consumer,
        )
        assert order.status == "active", order.status
        order_ids.append(order.pk)
    _key, token = api_key_create(actor=None, merchant=merchant, mode="live", label="bench")
    from django.db import connections

    connections.close_all()
    return token, order_ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(
    port: int, *, workers: int = 2, extra_args: tuple[str, ...] = (), ready_timeout_s: float = 60
) -> subprocess.Popen:
    """gunicorn on ``port`` with this process's environment; returns once the API answers (401 without a key)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "bnpl.wsgi:application",
            "--workers",
            str(workers),
            *extra_args,
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        start_new_session=True,
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/listings")  # 401 without a key: the app is up and answering
            if conn.getresponse().status == 401:
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("gunicorn did not start")


def post(port: int, token: str, body: bytes, key: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(
        "POST",
        "/api/v1/usage/batch",
        body=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data, (time.perf_counter() - started) * 1000


def build_batches(order_ids: list[int], events: int, batch: int) -> list[tuple[str, bytes]]:
    batches = []
    occurred_at = "2026-11-25T20:00:00+08:00"
    for start in range(0, events, batch):
        rows = [
            {
                "order_id": order_ids[n % len(order_ids)],
                "merchant_event_id": f"ev-{n}",
                "quantity": "0.25",
                "occurred_at": occurred_at,
                "properties": {"pile": n % 50},
            }
            for n in range(start, min(start + batch, events))
        ]
        batches.append((str(uuid.uuid4()), json.dumps({"events": rows}, separators=(",", ":")).encode()))
    return batches


def run(port: int, token: str, batches: list[tuple[str, bytes]], clients: int) -> tuple[float, list[float]]:
    queue = list(reversed(batches))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue or failures:
                    return
                key, body = queue.pop()
            status, data, ms = post(port, token, body, key)
            with lock:
                if status != 200:
                    failures.append(f"HTTP {status}: {data[:300]!r}")
                latencies.append(ms)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"batch failed: {failures[0]}")
    return elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()

    prepare_database()
    print(f"seeding {args.orders} active orders in {BENCH_DB} …", flush=True)
    token, order_ids = seed(args.orders)
    port = free_port()
    server = start_gunicorn(port)
    try:
        batches = build_batches(order_ids, args.events, args.batch)
        # Warm up both workers (imports, connections) with a tiny batch of other event ids.
        for n in range(4):
            warm = json.dumps(
                {
                    "events": [
                        {
                            "order_id": order_ids[0],
                            "merchant_event_id": f"warm-{n}",
                            "quantity": "1",
                            "occurred_at": "2026-11-25T19:00:00+08:00",
                        }
                    ]
                }
            ).encode()
            post(port, token, warm, str(uuid.uuid4()))
        print(
            f"posting {args.events} events in {len(batches)} batches of {args.batch} "
            f"from {args.clients} clients to gunicorn (2 workers) on port {port} …",
            flush=True,
        )
        elapsed, latencies = run(port, token, batches, args.clients)
        replay_key, replay_body = batches[0]
        status, data, _ms = post(port, token, replay_body, replay_key)
        replay = json.loads(data)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    from bnpl.models import UsageEvent

    stored = UsageEvent.objects.filter(merchant_event_id__startswith="ev-").count()
    if stored != args.events:
        raise SystemExit(f"expected {args.events} events stored, found {stored}")
    if status != 200 or replay.get("created") != min(args.batch, args.events):
        raise SystemExit(f"replay of the first batch answered {status}: {replay}")

    per_s = args.events / elapsed
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(f"events stored:      {stored}")
    print(f"wall time:          {elapsed:.2f} s")
    print(f"throughput:         {per_s:,.0f} events/s")
    print(f"batch latency:      median {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms")
    print(f"replay of batch 1:  HTTP {status}, stored response (created={replay['created']}), nothing recorded")
    print(json.dumps({"events": args.events, "per_s": round(per_s, 1), "p99_batch_ms": round(p99, 1)}))


if __name__ == "__main__":
    main()
