"""Benchmark of the charge run (not a test): how fast due orders are charged, against what ceiling.

    .venv/bin/python bench/charge_run.py --orders 20000

Runs in its own database (``bnpl_bench``, or ``--database``, on the server DATABASE_URL names, or on the
embedded server), which it drops and migrates first. Three phases, each on freshly generated due orders of
the same shape (one consumer, credit profile, funded default source, completed order with one bill line and
its completion posting per order):

1. the full charge run (``bnpl.charging.run_charges``) with the in-process sandbox gateway, which takes each
   chunk in one batch call (``--one-call-per-charge``: one call per charge, concurrently, as over HTTP);
2. the raw-SQL ceiling: claim + mark paid + a ledger transaction with two entries, 500 orders per
   transaction, on one connection — what the database alone can do for the same outcome;
3. the full charge run against the HTTP sandbox on a free local port with 50 ms of added latency per
   request: the lean server (``manage.py serve_sandbox_gateway``) by default, ``--server django`` for the
   web app's views under gunicorn.

Figures go to stdout; the last line is JSON:
``{"orders": N, "per_s": …, "sql_ceiling_per_s": …, "ratio": …, "http_50ms_per_s": …}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)
from copyload import copy_rows, reserve_ids  # noqa: E402

BENCH_DB = "bnpl_bench"
AMOUNT = Decimal("5.00")
MAX_AMOUNT = Decimal("20.00")


# --------------------------------------------------------------------------------------------------------------
# database set-up (before Django is configured, so that every process of the bench uses the bench database)


def prepare_database(name: str = BENCH_DB) -> str:
    """Drop and create the bench database ``name``; point this process (and its children) at it."""
    return use_bench_database(name)[0]


# --------------------------------------------------------------------------------------------------------------
# data generation: COPY (bench/copyload.py), with the columns a row does not set filled from the model's defaults


def generate_due_orders(n: int, tag: str) -> Any:
    """``n`` due, completed orders of one new merchant, each with its own funded consumer; returns the merchant."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from bnpl.choices import OrderStatus
    from bnpl.ledger import ledger_account_code, ledger_account_for
    from bnpl.models import (
        BillLine,
        CreditOrder,
        LedgerAccount,
        LedgerEntry,
        LedgerTransaction,
        SandboxFundingSource,
    )
    from bnpl.models.gateway import new_funding_token
    from bnpl.models.ledger import AccountKind, TransactionKind
    from consumers.models import Consumer, CreditProfile
    from merchants.choices import ConfirmMode, Scenario
    from tests.factories import ListingFactory, MerchantFactory

    user_model = get_user_model()
    now = timezone.now()
    merchant = MerchantFactory(display_name=f"bench {tag}")
    listing = ListingFactory(merchant=merchant, scenario=Scenario.EBIKE_CHARGING, confirm_mode=ConfirmMode.AGREEMENT)
    with transaction.atomic():
        user_ids = reserve_ids(user_model, n)
        copy_rows(
            user_model,
            ["id", "username", "password", "is_active", "date_joined"],
            ((uid, f"bench-{tag}-{i}", "!", True, now) for i, uid in enumerate(user_ids)),
        )
        consumer_ids = reserve_ids(Consumer, n)
        base = 10**8 * (1 + "abcdefgh".index(tag))  # distinct phone numbers per phase
        copy_rows(
            Consumer,
            ["id", "user_id", "phone", "phone_verified", "city"],
            (
                (cid, uid, f"13{base + i:09d}"[:11], True, "杭州")
                for i, (cid, uid) in enumerate(zip(consumer_ids, user_ids, strict=True))
            ),
        )
        copy_rows(
            CreditProfile,
            ["consumer_id", "score", "credit_limit_amount", "open_exposure_amount"],
            ((cid, 650, Decimal("1000.00"), AMOUNT) for cid in consumer_ids),
        )
        copy_rows(
            SandboxFundingSource,
            ["consumer_id", "token", "label", "balance_amount", "frozen", "is_default"],
            (
                (cid, new_funding_token(), "招商银行储蓄卡(1234)", Decimal("1000.00"), False, True)
                for cid in consumer_ids
            ),
        )
        order_ids = reserve_ids(CreditOrder, n)
        due = now - timedelta(minutes=1)
        copy_rows(
            CreditOrder,
            [
                "id",
                "merchant_id",
                "listing_id",
                "consumer_id",
                "out_order_no",
                "title",
                "scenario",
                "confirm_mode",
                "pricing_rule",
                "status",
                "max_amount",
                "amount_due",
                "hold_amount",
                "confirmed_at",
                "completed_at",
                "due_at",
            ],
            (
                (
                    oid,
                    merchant.pk,
                    listing.pk,
                    cid,
                    f"B-{tag}-{i}",
                    listing.title,
                    listing.scenario,
                    listing.confirm_mode,
                    json.dumps(listing.pricing_rule),
                    OrderStatus.COMPLETED,
                    MAX_AMOUNT,
                    AMOUNT,
                    AMOUNT,
                    due,
                    due,
                    due,
                )
                for i, (oid, cid) in enumerate(zip(order_ids, consumer_ids, strict=True))
            ),
        )
        copy_rows(
            BillLine,
            ["order_id", "position", "name", "quantity", "unit", "unit_price", "amount", "is_discount"],
            ((oid, 0, "充电时长", Decimal(5), "hour", Decimal(1), AMOUNT, False) for oid in order_ids),
        )
        # Receivable accounts and the completion posting of every order (what credit_order_complete posts).
        account_ids = reserve_ids(LedgerAccount, n)
        copy_rows(
            LedgerAccount,
            ["id", "code", "kind", "consumer_id"],
            (
                (aid, ledger_account_code(AccountKind.CONSUMER_RECEIVABLE, consumer_id=cid), "consumer_receivable", cid)
                for aid, cid in zip(account_ids, consumer_ids, strict=True)
            ),
        )
        payable = ledger_account_for(AccountKind.MERCHANT_PAYABLE, merchant=merchant)
        txn_ids = reserve_ids(LedgerTransaction, n)
        copy_rows(
            LedgerTransaction,
            ["id", "kind", "order_id", "idempotency_key", "description"],
            (
                (tid, TransactionKind.COMPLETION, oid, f"completion:{oid}", f"order {oid} completed")
                for tid, oid in zip(txn_ids, order_ids, strict=True)
            ),
        )
        copy_rows(
            LedgerEntry,
            ["transaction_id", "account_id", "amount"],
            (
                row
                for tid, aid in zip(txn_ids, account_ids, strict=True)
                for row in ((tid, aid, AMOUNT), (tid, payable.pk, -AMOUNT))
            ),
        )
    with transaction.atomic(), connection_cursor() as cursor:
        cursor.execute("ANALYZE")
    return merchant


@contextlib.contextmanager
def connection_cursor():
    from django.db import connection

    with connection.cursor() as cursor:
        yield cursor


# --------------------------------------------------------------------------------------------------------------
# phases


def timed_charge_run(*, gateway: Any, threads: int, chunk: int, workers: int, url: str, n: int) -> float:
    """Time a full charge run; ``workers`` > 1 runs that many ``run_charges`` processes side by side."""
    from bnpl.charging import run_charges

    started = time.perf_counter()
    if workers <= 1:
        run = run_charges(gateway=gateway, threads=threads, chunk_size=chunk, time_budget=timedelta(hours=2))
        elapsed = time.perf_counter() - started
        print(
            f"    run #{run.pk}: {run.succeeded} succeeded, {run.declined} declined, {run.unknown} unknown, "
            f"{run.errors} errors in {elapsed:.2f} s"
        )
    else:
        env = {**os.environ, "DATABASE_URL": url}
        command = [
            sys.executable,
            str(ROOT / "manage.py"),
            "run_charges",
            f"--threads={threads}",
            f"--chunk-size={chunk}",
            "--time-budget=7200",
        ]
        procs = [
            subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(workers)
        ]
        for proc in procs:
            out, _err = proc.communicate()
            print(f"    {out.strip()}")
        elapsed = time.perf_counter() - started
    return elapsed


_CEILING_SQL = """
WITH claimed AS (
    SELECT id FROM bnpl_creditorder
    WHERE status = 'completed' AND due_at <= now() AND merchant_id = %(merchant)s
    ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED
), paid AS (
    UPDATE bnpl_creditorder o SET status = 'paid', paid_at = now(), hold_amount = 0, updated_at = now()
    FROM claimed WHERE o.id = claimed.id
    RETURNING o.id, o.consumer_id, o.amount_due
), txns AS (
    INSERT INTO bnpl_ledgertransaction (kind, order_id, idempotency_key, description)
    SELECT 'charge', id, 'sql-ceiling:' || id, '' FROM paid
    RETURNING id, order_id
)
INSERT INTO bnpl_ledgerentry (transaction_id, account_id, amount)
SELECT t.id, x.account_id, x.amount
FROM txns t JOIN paid p ON p.id = t.order_id
JOIN bnpl_ledgeraccount r ON r.code = 'consumer_receivable:c:' || p.consumer_id
CROSS JOIN LATERAL (VALUES (%(clearing)s::bigint, p.amount_due), (r.id, -p.amount_due)) AS x(account_id, amount)
"""


def timed_sql_ceiling(merchant_id: int) -> tuple[float, int]:
    from django.db import connection, transaction

    from bnpl.ledger import ledger_account_for
    from bnpl.models.ledger import AccountKind

    clearing = ledger_account_for(AccountKind.PAYMENT_CLEARING).pk
    done = 0
    started = time.perf_counter()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CEILING_SQL, {"merchant": merchant_id, "clearing": clearing})
            rows = cursor.rowcount // 2
        done += rows
        if rows == 0:
            break
    return time.perf_counter() - started, done


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_http_sandbox(url: str, *, workers: int, threads: int, server: str = "django") -> tuple[subprocess.Popen, str]:
    """Start the HTTP sandbox provider on a free local port against database ``url``; returns (process, base URL).

    ``server`` "django" (the default, what other benches started before): the web app's views under
    gunicorn gthread (``workers`` × ``threads``); "lean": ``manage.py serve_sandbox_gateway`` (``workers``
    processes × ``threads`` database threads, asyncio connections, about a third of the CPU per request).
    Same endpoints, processing and faults; stop it with :func:`stop`.
    """
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BNPL_SANDBOX_HTTP_ENABLED": "1",
        # Each server thread keeps its connection: opening one per request would cost more than the request.
        "DATABASE_CONN_MAX_AGE": "600",
    }
    if server == "lean":
        command = [
            sys.executable,
            str(ROOT / "manage.py"),
            "serve_sandbox_gateway",
            f"--bind=127.0.0.1:{port}",
            f"--processes={workers}",
            f"--threads={threads}",
        ]
    elif server == "django":
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "bnpl.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--backlog",
            "2048",
            "--log-level",
            "warning",
        ]
    else:
        raise ValueError(f"server must be 'lean' or 'django', not {server!r}")
    proc = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/sandbox/gateway/"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(base + "query", data=b'{"idempotency_key": "ping"}', method="POST")
            with urllib.request.urlopen(request, timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the HTTP sandbox did not start")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def probe_http_sandbox(base: str, merchant_id: int, *, threads: int, n: int) -> float:
    """Charges per second the HTTP sandbox alone serves (no charge run): its capacity on this machine.

    ¥0.01 charges under throwaway keys on the funding sources of the phase's consumers, from ``threads``
    client threads — the most any client, the charge run included, can get through it.
    """
    from concurrent.futures import ThreadPoolExecutor

    from bnpl.gateway.http import HttpSandboxGateway
    from bnpl.models import SandboxFundingSource

    tokens = list(
        SandboxFundingSource.objects.filter(consumer__credit_orders__merchant_id=merchant_id).values_list(
            "token", flat=True
        )[:n]
    )
    client = HttpSandboxGateway(base, timeout_s=10)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(
            pool.map(lambda i: client.charge(f"probe-{i}", tokens[i], Decimal("0.01")).outcome, range(len(tokens)))
        )
    elapsed = time.perf_counter() - started
    ok = sum(1 for outcome in outcomes if outcome == "succeeded")
    print(f"    HTTP sandbox alone: {ok}/{len(tokens)} charges in {elapsed:.2f} s = {len(tokens) / elapsed:,.0f}/s")
    return len(tokens) / elapsed


def check_outcome(merchant_id: int, n: int) -> None:
    from bnpl.ledger import ledger_check
    from bnpl.models import ChargeAttempt, CreditOrder, SandboxCharge

    paid = CreditOrder.objects.filter(merchant_id=merchant_id, status="paid").count()
    succeeded = ChargeAttempt.objects.filter(order__merchant_id=merchant_id, status="succeeded").count()
    charges = SandboxCharge.objects.filter(
        status="succeeded",
        idempotency_key__in=ChargeAttempt.objects.filter(order__merchant_id=merchant_id).values("idempotency_key"),
    ).count()
    print(f"    check: {paid}/{n} orders paid, {succeeded} succeeded attempts, {charges} sandbox charges")
    if not (paid == succeeded == charges == n):
        raise SystemExit("the charge run did not charge every order exactly once")
    problems = ledger_check()
    if problems:
        raise SystemExit(f"ledger check failed: {problems[:5]}")


BREAKDOWN = [
    ("claim (lock due orders, write pending attempts)", "bnpl.charging", "claim_due"),
    ("gateway: in-process sandbox, one batch call per chunk", "bnpl.gateway.sandbox", "sandbox_charge_batch"),
    ("gateway: in-process sandbox, one call per charge", "bnpl.gateway.sandbox", "sandbox_charge"),
    ("record: whole chunk transaction", "bnpl.charging", "record_batch"),
    ("  of which scoring features (features_on_promises_kept)", "bnpl.charging_bulk", "features_on_promises_kept"),
    ("  of which credit holds released (consumers service)", "bnpl.charging_bulk", "credit_holds_release_many"),
    ("  of which promise records (consumers service)", "bnpl.charging_bulk", "promise_records_add_many"),
    ("  of which rewards (points, levels, campaigns)", "bnpl.charging_bulk", "incentives_on_promises_kept"),
    ("  of which ledger postings (2 statements per chunk)", "bnpl.charging_bulk", "_post_batch"),
    ("  of which order events (one COPY)", "bnpl.charging_bulk", "_insert_events"),
    ("  of which webhooks (one query without endpoints)", "bnpl.charging_bulk", "_enqueue_webhooks"),
    ("run bookkeeping (ChargeRun counters)", "bnpl.charging", "_add_to_run"),
]


def in_process_gateway(*, batches: bool = True) -> Any:
    """The in-process sandbox without faults: a batch call per chunk, or (``batches=False``) one call per charge."""
    from bnpl.gateway.faults import NO_FAULTS
    from bnpl.gateway.sandbox import InProcessSandboxGateway

    return InProcessSandboxGateway(faults=NO_FAULTS, batches=batches)


def breakdown(n: int, chunk: int, *, batches: bool) -> None:
    """Where the time of a charge run goes: one sequential run (no threads) with timers on its parts.

    Each part's wall time and this process's CPU time (Python, the client side): on a shared machine the
    wall time grows with the load, the CPU time much less, so the CPU column is the one to compare.
    """
    import importlib

    from bnpl.charging import run_charges

    spent: dict[str, float] = {}
    cpu: dict[str, float] = {}
    originals = []
    for label, module_name, attr in BREAKDOWN:
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
        originals.append((module, attr, original))

        def timed(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - started
                cpu[_label] = cpu.get(_label, 0.0) + time.process_time() - cpu_started

        setattr(module, attr, timed)
    generate_due_orders(n, "d")
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        run_charges(gateway=in_process_gateway(batches=batches), threads=1, chunk_size=chunk)
        total, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)
    print(
        f"    sequential run of {n} orders: {total:.2f} s = {n / total:,.0f} orders/s, "
        f"{total_cpu / n * 1000:.3f} ms of Python CPU per order; per order (wall, Python CPU):"
    )
    for label, _m, _a in BREAKDOWN:
        print(f"      {spent.get(label, 0.0) / n * 1000:7.3f} ms {cpu.get(label, 0.0) / n * 1000:7.3f} ms  {label}")


def diagnose_without_scoring(n: int, *, threads: int, chunk: int) -> float:
    """Diagnostic only: the same full run with the scoring feature hooks replaced by no-ops.

    Not the product (scoring must follow every payment): it shows what the charging machinery itself
    costs, apart from the score refresh that ``features_on_promises_kept`` runs per chunk.
    """
    from bnpl import charging_bulk

    merchant = generate_due_orders(n, "e")
    saved = charging_bulk.features_on_promises_kept, charging_bulk.features_on_charge_attempt
    charging_bulk.features_on_promises_kept = lambda **kwargs: None
    charging_bulk.features_on_charge_attempt = lambda **kwargs: None
    try:
        elapsed = timed_charge_run(gateway=in_process_gateway(), threads=threads, chunk=chunk, workers=1, url="", n=n)
    finally:
        charging_bulk.features_on_promises_kept, charging_bulk.features_on_charge_attempt = saved
    check_outcome(merchant.pk, n)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000, help="due orders per phase (default 100000)")
    parser.add_argument("--threads", type=int, default=16, help="gateway threads, in-process run (default 16)")
    parser.add_argument(
        "--chunk", type=int, default=None, help="orders per chunk (default: BNPL_CHARGE_CHUNK_SIZE, as a run uses)"
    )
    parser.add_argument("--workers", type=int, default=1, help="run_charges processes in the in-process phase")
    parser.add_argument(
        "--one-call-per-charge",
        action="store_true",
        help="in-process phase: one sandbox call per charge, concurrently, instead of one batch call per chunk",
    )
    parser.add_argument(
        "--http-threads",
        type=int,
        default=96,
        help="client threads of the HTTP sandbox probe, and the HTTP run's gateway threads (default 96)",
    )
    parser.add_argument("--http-chunk", type=int, default=400, help="orders per chunk against HTTP (default 400)")
    parser.add_argument(
        "--http-in-flight", type=int, default=200, help="a chunk's requests in flight at once over HTTP (default 200)"
    )
    parser.add_argument(
        "--server",
        choices=["lean", "django"],
        default="lean",
        help="HTTP sandbox: the lean server (manage.py serve_sandbox_gateway) or the Django views under gunicorn",
    )
    parser.add_argument("--server-workers", type=int, default=1, help="HTTP sandbox processes (default 1)")
    parser.add_argument(
        "--server-threads", type=int, default=4, help="database threads per lean process, or gunicorn threads"
    )
    parser.add_argument("--latency-ms", type=int, default=50, help="added latency of the HTTP sandbox (default 50)")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP phase")
    parser.add_argument(
        "--database", default=BENCH_DB, help=f"name of the bench database, dropped first (default {BENCH_DB})"
    )
    parser.add_argument("--breakdown", type=int, default=0, metavar="N", help="also time the parts on N orders")
    parser.add_argument(
        "--diagnose-without-scoring",
        type=int,
        default=0,
        metavar="N",
        help="diagnostic: also time a run of N orders with the scoring hooks switched off",
    )
    args = parser.parse_args()
    if args.one_call_per_charge and args.workers > 1:
        parser.error("--one-call-per-charge runs in this process: use it with --workers 1")

    url = prepare_database(args.database)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bnpl.gateway.http import HttpSandboxGateway
    from bnpl.gateway.services import sandbox_faults_set

    n = args.orders
    args.chunk = args.chunk or settings.BNPL_CHARGE_CHUNK_SIZE
    print(f"bench database {args.database}: migrating")
    call_command("migrate", verbosity=0)

    print(f"[1/3] full charge run, in-process sandbox: generating {n} due orders")
    t = time.perf_counter()
    merchant = generate_due_orders(n, "a")
    print(
        f"    generated in {time.perf_counter() - t:.1f} s; charging with {args.workers} worker(s), "
        f"{args.threads} threads, chunks of {args.chunk}, "
        + ("one sandbox call per charge" if args.one_call_per_charge else "one sandbox batch call per chunk")
    )
    elapsed = timed_charge_run(
        gateway=in_process_gateway(batches=not args.one_call_per_charge),
        threads=args.threads,
        chunk=args.chunk,
        workers=args.workers,
        url=url,
        n=n,
    )
    per_s = n / elapsed
    print(f"    {n} orders in {elapsed:.2f} s = {per_s:,.0f} orders/s")
    check_outcome(merchant.pk, n)

    print(f"[2/3] raw-SQL ceiling: generating {n} due orders")
    merchant = generate_due_orders(n, "b")
    elapsed, done = timed_sql_ceiling(merchant.pk)
    ceiling = done / elapsed
    print(f"    {done} orders in {elapsed:.2f} s = {ceiling:,.0f} orders/s (500 per transaction, one connection)")

    http_per_s = None
    if not args.skip_http:
        print(f"[3/3] full charge run, HTTP sandbox with {args.latency_ms} ms latency: generating {n} due orders")
        merchant = generate_due_orders(n, "c")
        sandbox_faults_set(actor=None, latency_ms=args.latency_ms)
        proc, base = start_http_sandbox(
            url, workers=args.server_workers, threads=args.server_threads, server=args.server
        )
        try:
            print(
                f"    {args.server} sandbox at {base} ({args.server_workers} processes x {args.server_threads} "
                "threads); "
                f"chunks of {args.http_chunk}, {args.http_in_flight} of a chunk's requests in flight at once"
            )
            probe_http_sandbox(base, merchant.pk, threads=args.http_threads, n=min(n, 3000))
            elapsed = timed_charge_run(
                gateway=HttpSandboxGateway(base, timeout_s=10, max_in_flight=args.http_in_flight),
                threads=args.http_threads,
                chunk=args.http_chunk,
                workers=1,
                url=url,
                n=n,
            )
        finally:
            stop(proc)
            sandbox_faults_set(actor=None)
        http_per_s = n / elapsed
        print(f"    {n} orders in {elapsed:.2f} s = {http_per_s:,.0f} orders/s")
        check_outcome(merchant.pk, n)

    if args.breakdown:
        print(f"[extra] where the time goes: {args.breakdown} orders, one thread")
        breakdown(args.breakdown, args.chunk, batches=not args.one_call_per_charge)
    if args.diagnose_without_scoring:
        m = args.diagnose_without_scoring
        print(f"[diagnostic] {m} orders, in-process sandbox, scoring hooks switched off (not the product)")
        rate = diagnose_without_scoring(m, threads=args.threads, chunk=args.chunk)
        print(f"    {rate:,.0f} orders/s; ratio to the SQL ceiling {rate / ceiling:.3f}")

    result = {
        "orders": n,
        "per_s": round(per_s, 1),
        "sql_ceiling_per_s": round(ceiling, 1),
        "ratio": round(per_s / ceiling, 3),
        "http_50ms_per_s": None if http_per_s is None else round(http_per_s, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
