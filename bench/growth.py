"""Growth benchmark (not a test): the charge run's cost follows the due orders, not the size of the history.

    .venv/bin/python bench/generate.py --database bnpl_gen --orders 1000000      # 1M orders of history
    .venv/bin/python bench/generate.py --database bnpl_gen5m --orders 5000000    # 5M
    .venv/bin/python bench/growth.py --databases bnpl_gen bnpl_gen5m --due 10000
    .venv/bin/python bench/growth.py --generate 1000000 5000000     # both steps: build the two, then measure
    .venv/bin/python bench/growth.py --generate 1000000             # build bnpl_gen; bnpl_gen5m must exist

For each database built by ``bench/generate.py`` (same merchants, listings and consumers; more or fewer orders of
history), in its own process:

1. tops the due set up to ``--due`` completed orders due now, if an earlier run charged them
   (``generate.top_up_due``: the same kind of orders as the generated due set, for the same parties — pass
   the ``--merchants/--listings/--consumers`` the database was generated with);
2. captures ``EXPLAIN (ANALYZE, BUFFERS)`` of the hot queries, as the code itself issues them (every SQL
   statement of the real function is recorded, then explained inside a transaction that is rolled back): the
   charge run's claim of due orders and of retries, the reconcile sweep, the overdue job (past the grace period,
   DPD refresh), settlement's selection of a merchant's payable entries, the merchant portal's order list and
   dashboard (for the biggest merchant);
3. times a full charge run (``run_charges``, in-process sandbox) over the due set, and checks every due order
   was charged once or declined.

Prints one table over the databases and, per database, each statement's plan summary (execution time, the
indexes used, any sequential scan of a big table); writes the full plans to
``bench/results/growth_plans_<database>.txt``. One JSON line per database
(``{"database": …, "orders": …, "due": …, "charge_s": …, "per_s": …, "seq_scans": […]}``), and last
``{"history_ratio": …, "charge_s_ratio": …, "seq_scans": […]}``: the charge run's time from the smallest history to
the largest, against how much the history grew.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import use_bench_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# Tables whose size follows the history: a sequential scan of one of them is a growth bug.
BIG_TABLES = (
    "bnpl_creditorder",
    "bnpl_chargeattempt",
    "bnpl_ledgerentry",
    "bnpl_ledgertransaction",
    "bnpl_billline",
    "bnpl_orderevent",
    "consumers_promiserecord",
    "bnpl_refund",
    "bnpl_settlementitem",
    "consumers_consumer",
    "consumers_creditprofile",
    "bnpl_sandboxfundingsource",
    "merchants_listing",
)


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------------------
# statements of a real function, and their plans


def capture(fn: Callable[[], Any], *, rollback: bool) -> list[tuple[str, Any]]:
    """Every SQL statement ``fn`` runs, with its parameters (inside a rolled-back transaction if ``rollback``)."""
    from django.db import connection, transaction

    seen: list[tuple[str, Any]] = []

    def wrapper(execute, sql, params, many, context):
        seen.append((sql, params))
        return execute(sql, params, many, context)

    class Rollback(Exception):
        pass

    with connection.execute_wrapper(wrapper):
        if rollback:
            try:
                with transaction.atomic():
                    fn()
                    raise Rollback
            except Rollback:
                pass
        else:
            fn()
    return seen


def touches_big_table(sql: str) -> bool:
    head = sql.lstrip().upper()
    if not (head.startswith("SELECT") or head.startswith("WITH") or head.startswith("UPDATE")):
        return False
    return any(table in sql for table in BIG_TABLES)


def explain(sql: str, params: Any) -> tuple[str, float]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of one statement, in a transaction that is rolled back; (plan, ms)."""
    from django.db import connection, transaction

    plan = ""
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            raise _Rollback
    except _Rollback:
        pass
    match = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return plan, float(match.group(1)) if match else 0.0


class _Rollback(Exception):
    pass


def seq_scans(plan: str) -> list[str]:
    """Big tables the plan reads whole (an empty one, estimated at cost 0.00..0.00, does not count)."""
    found = re.findall(r"Seq Scan on (\w+)[^(]*\(cost=[\d.]+\.\.([\d.]+)", plan)
    return sorted({table for table, cost in found if table in BIG_TABLES and float(cost) > 0})


def indexes_used(plan: str) -> list[str]:
    return sorted(
        set(re.findall(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)", plan))
    )


def hot_paths(merchant: Any) -> list[tuple[str, Callable[[], Any], bool, Callable[[str], bool]]]:
    """(label, function, run it rolled back?, which of its statements to explain)."""
    from django.utils import timezone

    from bnpl.charging import reconcile_unknown_attempts
    from bnpl.charging_bulk import claim_due
    from bnpl.gateway.faults import NO_FAULTS
    from bnpl.gateway.sandbox import InProcessSandboxGateway
    from bnpl.merchant_portal.selectors import OrderFilters, merchant_dashboard, merchant_order_page
    from bnpl.models import ChargeRun
    from bnpl.overdue import classify_overdue
    from bnpl.settlement import _SETTLEABLE_ENTRIES

    def claim() -> None:
        run = ChargeRun.objects.create()
        claim_due(run_id=run.pk, limit=200, now=timezone.now())

    def claim_retries() -> None:
        from django.db import connection

        from bnpl.charging_bulk import _CLAIM_RETRY

        with connection.cursor() as cursor:  # what claim_due runs once the due orders are all claimed
            cursor.execute(_CLAIM_RETRY, {"now": timezone.now(), "limit": 200})

    def settle_selection() -> None:
        from django.db import connection

        from bnpl.models import LedgerAccount

        account = LedgerAccount.objects.get(kind="merchant_payable", merchant=merchant)
        with connection.cursor() as cursor:
            cursor.execute(_SETTLEABLE_ENTRIES, {"account": account.pk, "cutoff": timezone.now()})
            cursor.fetchall()

    return [
        ("charge run: claim due orders", claim, True, lambda sql: "FOR UPDATE SKIP LOCKED" in sql),
        ("charge run: claim retries", claim_retries, True, lambda sql: "FOR UPDATE SKIP LOCKED" in sql),
        (
            "reconcile sweep (unknown attempts)",
            lambda: reconcile_unknown_attempts(gateway=InProcessSandboxGateway(faults=NO_FAULTS)),
            False,
            lambda sql: "bnpl_chargeattempt" in sql,
        ),
        ("overdue job: past grace + DPD refresh", lambda: classify_overdue(), True, touches_big_table),
        ("settlement: a merchant's payable entries", settle_selection, True, touches_big_table),
        (
            "portal: order list (first page)",
            lambda: merchant_order_page(merchant=merchant, filters=OrderFilters()),
            False,
            touches_big_table,
        ),
        ("portal: dashboard", lambda: merchant_dashboard(merchant=merchant), False, touches_big_table),
    ]


# --------------------------------------------------------------------------------------------------------------
# one database (run in its own process)


def measure(
    database: str, due: int, threads: int, chunk: int, parties: tuple[int, int, int], seed: int
) -> dict[str, Any]:
    merchants, listings, consumers = parties
    use_bench_database(database, drop=False)
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from bnpl.charging import run_charges
    from bnpl.gateway.faults import NO_FAULTS
    from bnpl.gateway.sandbox import InProcessSandboxGateway
    from bnpl.models import CreditOrder
    from merchants.models import Merchant

    history = CreditOrder.objects.count()
    due_now = CreditOrder.objects.filter(status="completed", due_at__lte=timezone.now())
    have = due_now.count()
    if have < due:
        import generate

        log(f"  {database}: {have} due orders, adding {due - have} like generate.py's (generate.top_up_due)")
        generate.top_up_due(generate.Shape(merchants, listings, consumers, 0, 0, 180, seed), due - have)
    due_ids = list(due_now.values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    # The biggest merchant: the portal pages and settlement read its history.
    merchant = Merchant.objects.order_by("pk").first()  # generate.py's merchant #0 holds 2 % of all orders
    plans: list[dict[str, Any]] = []
    text = [f"# {database}: {history:,} orders, {len(due_ids):,} due, {size}\n"]
    for label, fn, rollback, wanted in hot_paths(merchant):
        started = time.perf_counter()
        statements = capture(fn, rollback=rollback)
        wall_ms = (time.perf_counter() - started) * 1000
        explained: set[str] = set()
        for sql, params in statements:
            if not wanted(sql) or sql in explained:
                continue  # a statement repeated per chunk is explained once, with its first parameters
            explained.add(sql)
            plan, ms = explain(sql, params)
            entry = {
                "path": label,
                "sql": " ".join(sql.split())[:160],
                "ms": round(ms, 2),
                "indexes": indexes_used(plan),
                "seq_scans": seq_scans(plan),
            }
            plans.append(entry)
            text.append(f"## {label}  ({wall_ms:.0f} ms for the whole function)\n\n{sql.strip()}\n\n{plan}\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"growth_plans_{database}.txt").write_text("\n".join(text))

    started = time.perf_counter()
    run = run_charges(
        gateway=InProcessSandboxGateway(faults=NO_FAULTS),
        threads=threads,
        chunk_size=chunk,
        time_budget=timedelta(hours=2),
    )
    charge_s = time.perf_counter() - started
    charged = CreditOrder.objects.filter(pk__in=due_ids, status="paid").count()
    declined = CreditOrder.objects.filter(pk__in=due_ids, status="collecting").count()
    if charged + declined != len(due_ids):
        raise SystemExit(f"{database}: {charged} paid + {declined} declined of {len(due_ids)} due orders")
    return {
        "database": database,
        "orders": history,
        "size": size,
        "due": len(due_ids),
        "charged": charged,
        "declined": declined,
        "run": {"succeeded": run.succeeded, "declined": run.declined, "errors": run.errors},
        "charge_s": round(charge_s, 2),
        "per_s": round(len(due_ids) / charge_s, 1),
        "plans": plans,
        "seq_scans": sorted({t for p in plans for t in p["seq_scans"]}),
        "load_avg": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", nargs="+", default=["bnpl_gen", "bnpl_gen5m"])
    parser.add_argument("--due", type=int, default=10_000, help="due orders charged in each database")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument(
        "--generate",
        nargs="+",
        type=int,
        metavar="ORDERS",
        help="first build the first databases with bench/generate.py, this many orders each (the others must exist)",
    )
    parser.add_argument("--merchants", type=int, default=40_000, help="with --generate")
    parser.add_argument("--listings", type=int, default=1_400_000, help="with --generate")
    parser.add_argument("--consumers", type=int, default=1_000_000, help="with --generate")
    parser.add_argument("--seed", type=int, default=20_261_126, help="of the due orders added by a top-up")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this database, print its JSON
    args = parser.parse_args()
    if args.one:
        parties = (args.merchants, args.listings, args.consumers)
        print(json.dumps(measure(args.one, args.due, args.threads, args.chunk, parties, args.seed), ensure_ascii=False))
        return
    if args.generate:
        if len(args.generate) > len(args.databases):
            parser.error("--generate: at most one size per database")
        for database, orders in zip(args.databases, args.generate, strict=False):
            log(f"== generating {database}: {orders:,} orders")
            command = [sys.executable, str(ROOT / "bench" / "generate.py"), "--database", database,
                       "--orders", str(orders), "--due", str(args.due), "--merchants", str(args.merchants),
                       "--listings", str(args.listings), "--consumers", str(args.consumers)]  # fmt: skip
            proc = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, check=False)
            log("   " + "\n   ".join(proc.stdout.strip().splitlines()[-3:]))
            if proc.returncode != 0:
                raise SystemExit(f"{database}: generation failed")

    runs = []
    for database in args.databases:
        log(f"== {database}")
        command = [sys.executable, __file__, "--one", database, "--due", str(args.due), "--threads",
                   str(args.threads), "--chunk", str(args.chunk), "--merchants", str(args.merchants),
                   "--listings", str(args.listings), "--consumers", str(args.consumers),
                   "--seed", str(args.seed)]  # fmt: skip
        proc = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, check=False)
        lines = proc.stdout.strip().splitlines()
        for line in lines[:-1]:
            log(line)
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{database}: failed")
        runs.append(json.loads(lines[-1]))

    log("")
    log(f"{'database':<14} {'orders':>10} {'size':>8} {'due':>7} {'charge run':>11} {'orders/s':>9}  seq scans")
    for r in runs:
        log(
            f"{r['database']:<14} {r['orders']:>10,} {r['size']:>8} {r['due']:>7,} {r['charge_s']:>9.1f} s "
            f"{r['per_s']:>9,.0f}  {', '.join(r['seq_scans']) or 'none'}"
        )
    log("")
    paths = [(p["path"], p["sql"]) for p in runs[0]["plans"]]
    log(f"{'hot statement (ms, EXPLAIN ANALYZE)':<90} " + " ".join(f"{r['database']:>12}" for r in runs))
    for i, (path, sql) in enumerate(paths):
        cells = []
        for r in runs:
            p = r["plans"][i] if i < len(r["plans"]) and r["plans"][i]["sql"] == sql else None
            cells.append(f"{p['ms']:>12.2f}" if p else f"{'-':>12}")
        log(f"{(path + ': ' + sql)[:90]:<90} " + " ".join(cells))
        indexes = ", ".join(runs[-1]["plans"][i]["indexes"]) if i < len(runs[-1]["plans"]) else ""
        log(f"    indexes: {indexes or '(none)'}")
    for r in runs:
        keys = ("database", "orders", "due", "charged", "charge_s", "per_s", "seq_scans", "load_avg")
        print(json.dumps({k: r[k] for k in keys}, ensure_ascii=False))
    first, last = runs[0], runs[-1]
    summary = {
        "history_ratio": round(last["orders"] / first["orders"], 2),
        "charge_s_ratio": round(last["charge_s"] / first["charge_s"], 2),
        "seq_scans": sorted({t for r in runs for t in r["seq_scans"]}),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
