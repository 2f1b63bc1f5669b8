"""Benchmark (not a test): the charge run spread over 1, 2 and 4 django-q2 clusters sharing one PostgreSQL.

    .venv/bin/python bench/charge_scaleout.py --orders 2000
    .venv/bin/python bench/charge_scaleout.py --orders 20000 --clusters 1 2 4 --workers 4

Runs in its own database (``bnpl_so`` on the server DATABASE_URL names, or on the embedded server), which it
drops and migrates first (no schedules are installed: the bench enqueues the work itself, see below), with the
HTTP sandbox of ``bench/charge_run.py`` (the lean server, ``--latency-ms`` of added latency per request, 50
by default) as the payment gateway. Orders, the sandbox server and the exactly-once check are
``charge_run.generate_due_orders``, ``start_http_sandbox`` and ``check_outcome``.

For each row: ``--orders`` fresh due orders; ``k`` ``manage.py qcluster`` processes (``Q_WORKERS=--workers``
each) on the Redis broker (``Q_REDIS_URL=redis://127.0.0.1:6379/--redis-db``, the database emptied first) with
``BNPL_GATEWAY=sandbox_http`` and ``BNPL_CHARGE_RUN_FAN_OUT=k × workers``; once every cluster reports in, one
``bnpl.tasks.charge_run`` is enqueued, as the schedule does every minute, and the clock runs until every order
is paid.

How the work spreads: the scheduled run sees the backlog and first enqueues up to ``BNPL_CHARGE_RUN_FAN_OUT -
1`` helper runs (one per chunk due beyond its own; helpers do not fan out), exactly as in production. Each run
claims its chunks with ``FOR UPDATE SKIP LOCKED`` and records each attempt once, so runs on different machines
share a backlog without coordination. The bench reports how many distinct worker processes actually charged
orders (the Redis broker hands tasks to whichever cluster asks first, so the spread is measured, not assumed).

After each row: every order paid, one succeeded attempt per order, as many sandbox charges as orders, the
ledger balanced (``charge_run.check_outcome``), and no order with more than one succeeded attempt. Figures go
to stdout with the load average; the last line is JSON:
``{"orders": N, "rows": [{"clusters", "workers", "orders", "seconds", "per_s", "charging_workers"}], …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)
from charge_run import check_outcome, generate_due_orders, start_http_sandbox, stop  # noqa: E402

BENCH_DB = "bnpl_so"
TAGS = "abcdefgh"  # generate_due_orders keeps phone numbers apart by tag: one per row


def prepare(redis_db: int) -> str:
    """Drop and create the bench database; this process and its children use it and the Redis broker."""
    url, _kept = use_bench_database(BENCH_DB)
    os.environ["Q_REDIS_URL"] = f"redis://127.0.0.1:6379/{redis_db}"
    return url


def flush_broker() -> None:
    """Empty the bench's Redis database (queue and cluster stats of a previous row)."""
    import redis

    try:
        redis.Redis.from_url(os.environ["Q_REDIS_URL"]).flushdb()
    except redis.ConnectionError as exc:
        raise SystemExit(f"no Redis server at {os.environ['Q_REDIS_URL']} (the clusters' broker): {exc}") from exc


def start_clusters(count: int, *, workers: int, gateway_url: str, threads: int, chunk: int) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "Q_WORKERS": str(workers),
        "BNPL_CHARGE_RUN_FAN_OUT": str(count * workers),
        "BNPL_GATEWAY": "sandbox_http",
        "BNPL_GATEWAY_URL": gateway_url,
        "BNPL_CHARGE_THREADS": str(threads),
        "BNPL_CHARGE_CHUNK_SIZE": str(chunk),
        "DATABASE_CONN_MAX_AGE": "60",
    }
    command = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
    return [
        subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]


def wait_for_clusters(count: int, timeout_s: float = 180) -> None:
    """Until ``count`` clusters publish their stats on the broker (their workers are up)."""
    from django_q.brokers import get_broker
    from django_q.status import Stat

    broker = get_broker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = Stat.get_all(broker=broker)
        if len(stats) >= count and all(len(stat.workers) > 0 for stat in stats):
            return
        time.sleep(0.5)
    raise SystemExit(f"{count} clusters did not start within {timeout_s:.0f} s")


def wait_for_charging(merchant_id: int, n: int, tasks: int, since: Any, timeout_s: float) -> float:
    """Seconds from now until all ``n`` orders are paid; then waits for every enqueued run to finish."""
    from bnpl.models import ChargeRun, CreditOrder
    from bnpl.models.charging import ChargeRunStatus

    started = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    elapsed = None
    while time.monotonic() < deadline:
        if elapsed is None and CreditOrder.objects.filter(merchant_id=merchant_id, status="paid").count() == n:
            elapsed = time.perf_counter() - started
        if elapsed is not None:
            runs = ChargeRun.objects.filter(started_at__gte=since)
            if runs.count() >= tasks and not runs.filter(status=ChargeRunStatus.RUNNING).exists():
                return elapsed
        time.sleep(0.2)
    raise SystemExit(f"the charge runs did not finish within {timeout_s:.0f} s")


def check_once_per_order(merchant_id: int) -> None:
    from django.db.models import Count, Q

    from bnpl.models import CreditOrder

    twice = (
        CreditOrder.objects.filter(merchant_id=merchant_id)
        .annotate(ok=Count("charge_attempts", filter=Q(charge_attempts__status="succeeded")))
        .exclude(ok=1)
        .count()
    )
    if twice:
        raise SystemExit(f"{twice} orders have no or more than one succeeded attempt")


def charging_workers(since: Any) -> tuple[int, int]:
    """(charge runs that claimed orders, distinct processes they ran in) since ``since``."""
    from bnpl.models import ChargeRun

    runs = list(ChargeRun.objects.filter(started_at__gte=since, claimed__gt=0).values_list("worker", flat=True))
    processes = {worker.rsplit(":", 1)[0] for worker in runs}  # host:pid (the thread id differs per run)
    return len(runs), len(processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="due orders per row (default 2000)")
    parser.add_argument("--clusters", type=int, nargs="+", default=[1, 2, 4], help="rows (default 1 2 4)")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS per cluster (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="gateway threads per charge run (default 16)")
    parser.add_argument("--chunk", type=int, default=200, help="orders per claimed chunk (default 200)")
    parser.add_argument("--server-workers", type=int, default=1, help="processes of the HTTP sandbox (default 1)")
    parser.add_argument("--server-threads", type=int, default=4, help="database threads per sandbox process")
    parser.add_argument("--latency-ms", type=int, default=50, help="added latency of the HTTP sandbox (default 50)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database of the broker (emptied)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a row may take")
    args = parser.parse_args()
    if len(args.clusters) > len(TAGS):
        raise SystemExit(f"at most {len(TAGS)} rows")

    load_before = os.getloadavg()
    url = prepare(args.redis_db)
    flush_broker()  # early: without a Redis server there is nothing to measure
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone
    from django_q.tasks import async_task

    from bnpl.gateway.services import sandbox_faults_set

    print(f"bench database {BENCH_DB}: migrating", flush=True)
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    sandbox_faults_set(actor=None, latency_ms=args.latency_ms)
    sandbox, base = start_http_sandbox(url, workers=args.server_workers, threads=args.server_threads, server="lean")
    print(
        f"HTTP sandbox at {base} ({args.server_workers} lean server process(es) x {args.server_threads} threads, "
        f"{args.latency_ms} ms latency); broker {os.environ['Q_REDIS_URL']}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        for tag, clusters in zip(TAGS, args.clusters, strict=False):
            n = args.orders
            merchant = generate_due_orders(n, tag)
            flush_broker()
            procs = start_clusters(
                clusters, workers=args.workers, gateway_url=base, threads=args.threads, chunk=args.chunk
            )
            try:
                wait_for_clusters(clusters)
                workers = clusters * args.workers
                tasks = min(workers, -(-n // args.chunk))  # the scheduled run and its helpers (one per chunk)
                since = timezone.now()
                async_task("bnpl.tasks.charge_run", task_name="bench charge_run")
                seconds = wait_for_charging(merchant.pk, n, tasks, since, args.timeout)
            finally:
                for proc in procs:
                    stop(proc)
            runs, processes = charging_workers(since)
            check_outcome(merchant.pk, n)
            check_once_per_order(merchant.pk)
            row = {
                "clusters": clusters,
                "workers": workers,
                "runs": tasks,
                "orders": n,
                "seconds": round(seconds, 2),
                "per_s": round(n / seconds, 1),
                "charging_workers": processes,
                "load": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(
                f"    {clusters} cluster(s), {workers} workers, {tasks} runs after fan-out: {runs} runs in {processes} "
                f"worker processes "
                f"charged; {n} orders in {seconds:.2f} s = {n / seconds:,.1f} orders/s (load {row['load']})",
                flush=True,
            )
    finally:
        stop(sandbox)
        sandbox_faults_set(actor=None)

    print()
    print(f"{'clusters':>8} {'workers':>8} {'charging':>9} {'orders':>7} {'seconds':>8} {'orders/s':>9} {'load':>6}")
    for row in rows:
        print(
            f"{row['clusters']:>8} {row['workers']:>8} {row['charging_workers']:>9} {row['orders']:>7} "
            f"{row['seconds']:>8.2f} {row['per_s']:>9,.1f} {row['load']:>6.2f}"
        )
    print(
        f"(workers = Q_WORKERS x clusters = BNPL_CHARGE_RUN_FAN_OUT; charging = worker processes whose run claimed "
        f"orders; {args.threads} gateway threads per run; load average {load_before[0]:.2f} at start, "
        f"{os.cpu_count()} CPUs)"
    )
    print(json.dumps({"orders": args.orders, "latency_ms": args.latency_ms, "rows": rows}))


if __name__ == "__main__":
    main()
