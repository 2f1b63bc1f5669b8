"""Benchmark of the merchant portal's pages (not a test): order list, order detail and dashboard server time.

    .venv/bin/python bench/portal_pages.py                       # 1,000,000 orders, one merchant holding 100,000
    .venv/bin/python bench/portal_pages.py --orders 100000 --merchant-orders 10000 --runs 20   # a quick look
    .venv/bin/python bench/portal_pages.py --rebuild            # drop the data set and build it again
    .venv/bin/python bench/portal_pages.py --trigger-cost       # what the dashboard roll-up's trigger adds to writes

Runs in its own database, ``--database`` (default ``bnpl_portal_bench``, or ``$BENCH_DB``) on the server
DATABASE_URL names (or the embedded server): two data sets of different shapes need two names. The data set is
built once with ``INSERT … SELECT generate_series`` (a couple of minutes for a million orders) and
reused while its size matches the arguments; migrations are applied on every run, so a new index is measured.

The data: ``--merchants`` merchants with five listings each; merchant #1 holds ``--merchant-orders`` orders, the
rest share the remainder; 200,000 consumers with distinct phones; orders spread at random over the last 365 days
(no physical clustering by time: a pessimistic layout for the dashboard's 30-day scan) in every
status (about 64 % paid, 4 % overdue across M0…M3+, refunds, guarantees), a charge attempt for every charged or
collecting order, and for merchant #1 two order events and a bill line per order and a dispute on 1 % of them.

Each page is requested through Django's test client (the whole stack: middleware, session, view, template)
``--runs`` times after three warm-up requests, as merchant #1's owner; the order detail cycles through
different orders. One JSON line per page on stdout:
``{"page": …, "p50_ms": …, "p95_ms": …, "queries": …, "db_p50_ms": …}`` (queries of one request, session and
auth included; ``db_p50_ms`` is the median of the time spent in those queries, as the client measures it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)

BENCH_DB = os.environ.get("BENCH_DB", "bnpl_portal_bench")
CONSUMERS = 200_000
LISTINGS_PER_MERCHANT = 5


def prepare_database(name: str, rebuild: bool) -> None:
    """Create the bench database ``name`` if missing (drop it first with ``rebuild``); point Django at it."""
    use_bench_database(name, drop=rebuild)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------------
# data generation


def insert_select(model: Any, given: dict[str, str], source: str, params: list[Any] | None = None) -> int:
    """``INSERT INTO model (…) SELECT <given exprs>, <defaults> FROM <source>``; returns the row count.

    The given expressions take no parameters (write ``%%`` for a literal ``%``); ``params`` belong to ``source``.

    ``given`` maps attnames to SQL expressions over ``source``; every other concrete column gets the model's
    Python default (or NULL / '' as the field allows), so a field added later still gets a valid value.
    """
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    columns, exprs, constants = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.attname not in given:
            continue
        columns.append(field.column)
        if field.attname in given:
            exprs.append(given[field.attname])
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        elif field.has_default():
            value = field.get_default()
        elif field.null:
            value = None
        else:
            value = field.get_default()
        exprs.append("%s")
        constants.append(field.get_db_prep_save(value, connection))
    missing = set(given) - {f.attname for f in model._meta.concrete_fields}
    if missing:
        raise ValueError(f"unknown fields {missing}")
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(exprs)} FROM {source}"
    with connection.cursor() as cursor:
        # Constants come first in the statement (the SELECT list), the source's own parameters after.
        cursor.execute(sql, [*constants, *(params or [])])
        return cursor.rowcount


STATUS_SQL = """CASE
  WHEN r < 0.05 THEN 'declined' WHEN r < 0.08 THEN 'expired' WHEN r < 0.12 THEN 'cancelled'
  WHEN r < 0.20 THEN 'active' WHEN r < 0.23 THEN 'completed' WHEN r < 0.27 THEN 'collecting'
  WHEN r < 0.31 THEN 'overdue' WHEN r < 0.95 THEN 'paid' WHEN r < 0.98 THEN 'partially_refunded'
  ELSE 'refunded' END"""
BILLED = "('completed','collecting','overdue','paid','partially_refunded','refunded')"


def build(orders: int, merchant_orders: int, merchants: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from bnpl.models import BillLine, ChargeAttempt, CreditOrder, Dispute, OrderEvent
    from consumers.models import Consumer
    from merchants.models import Listing, Merchant

    user_model = get_user_model()
    started = time.monotonic()
    with transaction.atomic():
        for table in ("bnpl_dispute", "bnpl_billline", "bnpl_orderevent", "bnpl_chargeattempt", "bnpl_creditorder"):
            connection.cursor().execute(f"TRUNCATE {table} CASCADE")
        rule = {
            "kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "0",
            "minimum_amount": "0.00",
            "cap_per_24h": "10.00",
            "round_up": True,
        }
        if Merchant.objects.count() < merchants:
            now = timezone.now()
            from stdnum.cn import uscc

            made = []
            for n in range(merchants):
                body = f"91330106MB{n:07d}"
                made.append(
                    Merchant(
                        legal_name=f"杭州压测商贸有限公司{n}",
                        display_name=f"压测商家{n}",
                        uscc=body + uscc.calc_check_digit(body),
                        contact_name="李四",
                        contact_phone=f"137{n:08d}",
                        categories=["ebike_charging"],
                        settlement_bank_name="招商银行",
                        settlement_account_name=f"杭州压测商贸有限公司{n}",
                        settlement_account_number="6225880123456789",
                        status="approved",
                        submitted_at=now,
                        approved_at=now,
                    )
                )
            Merchant.objects.bulk_create(made)
            Listing.objects.bulk_create(
                Listing(
                    merchant=m,
                    title=f"充电桩 {m.pk}-{i}",
                    scenario="ebike_charging",
                    confirm_mode="agreement",
                    max_amount="500.00",
                    pricing_rule=rule,
                )
                for m in Merchant.objects.order_by("pk")[:merchants]
                for i in range(LISTINGS_PER_MERCHANT)
            )
        if Consumer.objects.count() < CONSUMERS:
            first_user = insert_select(
                user_model,
                {
                    "password": "'!'",
                    "username": "'bench' || g",
                    "email": "''",
                    "first_name": "''",
                    "last_name": "''",
                    "is_active": "true",
                    "is_staff": "false",
                    "is_superuser": "false",
                    "date_joined": "now()",
                },
                "generate_series(1, %s) g",
                [CONSUMERS],
            )
            log(f"users: {first_user}")
            insert_select(
                Consumer,
                {"user_id": "u.id", "phone": "'139' || lpad(u.rn::text, 8, '0')", "created_at": "now()"},
                "(SELECT id, row_number() OVER (ORDER BY id) rn FROM auth_user WHERE username LIKE 'bench%%') u",
            )
        merchant_ids = list(Merchant.objects.order_by("pk").values_list("pk", flat=True)[:merchants])
        listing_ids = []
        for mid in merchant_ids:
            ids = list(Listing.objects.filter(merchant_id=mid).order_by("pk").values_list("pk", flat=True))[
                :LISTINGS_PER_MERCHANT
            ]
            listing_ids.extend(ids)
        consumer_ids_min, consumer_count = (
            Consumer.objects.order_by("pk").values_list("pk", flat=True)[0],
            Consumer.objects.count(),
        )
        log(f"set-up: {time.monotonic() - started:.1f}s")
        # Merchant index (0-based): the first merchant_orders rows go to merchant 0, the rest round-robin.
        midx = f"(CASE WHEN g <= {merchant_orders} THEN 0 ELSE 1 + (g %% {max(merchants - 1, 1)}) END)"
        merchant_array = ",".join(map(str, merchant_ids))
        listing_array = ",".join(map(str, listing_ids))
        source = (
            f"(SELECT g, {midx} AS m, random() AS r, random() AS r2, random() AS r3 "
            f"FROM generate_series(1, {orders}) g) s"
        )
        billed = f"({STATUS_SQL}) IN {BILLED}"
        amount_due = f"CASE WHEN {billed} THEN round((5 + r2 * 495)::numeric * 0.6, 2) END"
        n = insert_select(
            CreditOrder,
            {
                "merchant_id": f"(ARRAY[{merchant_array}]::bigint[])[m + 1]",
                "listing_id": f"(ARRAY[{listing_array}]::bigint[])"
                f"[m * {LISTINGS_PER_MERCHANT} + (g %% {LISTINGS_PER_MERCHANT}) + 1]",
                "consumer_id": f"{consumer_ids_min} + ((g::bigint * 7919) %% {consumer_count})",
                "out_order_no": "'BN' || lpad(g::text, 9, '0')",
                "title": "'电动车充电'",
                "scenario": "'ebike_charging'",
                "confirm_mode": "'agreement'",
                "pricing_rule": f"$rule${json.dumps(rule)}$rule$::jsonb",
                "status": STATUS_SQL,
                "max_amount": "round((5 + r2 * 495)::numeric, 2)",
                "amount_due": amount_due,
                "refunded_amount": f"CASE WHEN r >= 0.98 THEN {amount_due} "
                f"WHEN r >= 0.95 THEN round(({amount_due}) * 0.3, 2) ELSE 0 END",
                "dpd": "CASE WHEN r >= 0.27 AND r < 0.31 THEN (1 + floor(r3 * 120))::int ELSE 0 END",
                "dpd_bucket": "CASE WHEN r >= 0.27 AND r < 0.31 THEN (CASE WHEN r3 < 0.25 THEN 'M0' "
                "WHEN r3 < 0.5 THEN 'M1' WHEN r3 < 0.75 THEN 'M2' ELSE 'M3+' END) ELSE '' END",
                "guaranteed_at": "CASE WHEN r >= 0.27 AND r < 0.31 AND r2 < 0.5 THEN now() END",
                "created_at": "now() - r3 * interval '365 days'",
                "updated_at": "now()",
                "completed_at": f"CASE WHEN {billed} THEN now() - r3 * interval '365 days' + interval '2 hours' END",
                "due_at": f"CASE WHEN {billed} THEN now() - r3 * interval '365 days' + interval '1 day' END",
                "paid_at": "CASE WHEN r >= 0.31 THEN now() - r3 * interval '365 days' + interval '1 day' END",
                # Every paid or refunded order here was charged by the platform (its attempt below succeeded).
                "charged_at": "CASE WHEN r >= 0.31 THEN now() - r3 * interval '365 days' + interval '1 day' END",
                "charge_attempt_count": "CASE WHEN r >= 0.23 THEN 1 ELSE 0 END",
                "charge_failure_count": "CASE WHEN r >= 0.23 AND r < 0.31 THEN 1 ELSE 0 END",
            },
            source,
        )
        log(f"orders: {n} in {time.monotonic() - started:.1f}s")
        n = insert_select(
            ChargeAttempt,
            {
                "order_id": "o.id",
                "sequence": "1",
                "idempotency_key": "'ca-' || o.id",
                "trigger": "'scheduled'",
                "amount": "o.amount_due",
                "status": "CASE WHEN o.status IN ('collecting', 'overdue') THEN 'declined' ELSE 'succeeded' END",
                "decline_code": "CASE WHEN o.status IN ('collecting', 'overdue') THEN 'insufficient_funds' ELSE '' END",
                "gateway_reference": "CASE WHEN o.status IN ('collecting', 'overdue') THEN '' ELSE 'gw-' || o.id END",
                "requested_at": "o.due_at",
                "last_sent_at": "o.due_at",
                "finished_at": "o.due_at",
            },
            "bnpl_creditorder o WHERE o.status IN ('collecting','overdue','paid','partially_refunded','refunded')",
        )
        log(f"charge attempts: {n} in {time.monotonic() - started:.1f}s")
        big = merchant_ids[0]
        n = insert_select(
            OrderEvent,
            {
                "order_id": "o.id",
                "actor_kind": "'merchant'",
                "from_status": "CASE WHEN k = 1 THEN '' ELSE 'active' END",
                "to_status": "CASE WHEN k = 1 THEN 'active' ELSE o.status END",
                "reason": "''",
                "data": "'{}'::jsonb",
                "created_at": "o.created_at + k * interval '1 minute'",
            },
            "bnpl_creditorder o CROSS JOIN generate_series(1, 2) k WHERE o.merchant_id = %s",
            [big],
        )
        n += insert_select(
            BillLine,
            {
                "order_id": "o.id",
                "position": "0",
                "name": "'充电'",
                "quantity": "1",
                "unit": "'次'",
                "unit_price": "o.amount_due",
                "amount": "o.amount_due",
                "is_discount": "false",
            },
            f"bnpl_creditorder o WHERE o.merchant_id = %s AND o.status IN {BILLED}",
            [big],
        )
        n += insert_select(
            Dispute,
            {
                "order_id": "o.id",
                "consumer_id": "o.consumer_id",
                "merchant_id": "o.merchant_id",
                "reason": "'wrong_amount'",
                "disputed_amount": "o.amount_due",
                "after_charge": "true",
                "status": "'decided'",
                "outcome": "'merchant_won'",
                "respond_by": "o.created_at + interval '7 days'",
                "created_at": "o.created_at + interval '2 days'",
            },
            "bnpl_creditorder o WHERE o.merchant_id = %s AND o.status IN ('paid','refunded') AND o.id %% 100 = 0",
            [big],
        )
        log(f"events, bill lines, disputes: {n} in {time.monotonic() - started:.1f}s")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text)")
        cursor.execute(
            "INSERT INTO bench_meta VALUES ('shape', %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [f"{orders}/{merchant_orders}/{merchants}"],
        )
    # What the every-minute job would have done by the time anyone looks: the build's deltas folded into the
    # dashboard's roll-up.
    from bnpl.merchant_portal.day_stats import day_stats_fold

    log(f"dashboard roll-up: {day_stats_fold(time_budget_s=600)}")
    connection.cursor().execute("VACUUM ANALYZE")
    log(f"data set built in {time.monotonic() - started:.1f}s")


def shape_matches(orders: int, merchant_orders: int, merchants: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('bench_meta')")
        if cursor.fetchone()[0] is None:
            return False
        cursor.execute("SELECT value FROM bench_meta WHERE key = 'shape'")
        row = cursor.fetchone()
    return bool(row) and row[0] == f"{orders}/{merchant_orders}/{merchants}"


# --------------------------------------------------------------------------------------------------------------
# timing


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(runs: int) -> list[dict[str, Any]]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from bnpl.merchant_portal.selectors import OrderFilters, merchant_order_page
    from bnpl.models import CreditOrder
    from merchants.models import Merchant, MerchantMember

    # The test client's host, and plain static storage (no collectstatic manifest); no setup_test_environment():
    # its instrumented template rendering would add to every timing.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    merchant = Merchant.objects.order_by("pk").first()
    user, _ = get_user_model().objects.get_or_create(username="bench-owner")
    MerchantMember.objects.get_or_create(merchant=merchant, user=user, defaults={"role": "owner"})
    client = Client()
    client.force_login(user)
    orders_url = reverse("merchant:orders")
    detail_ids = list(
        CreditOrder.objects.filter(merchant=merchant, status="paid")
        .order_by("?")
        .values_list("pk", flat=True)[: runs + 3]
    )
    cursor = merchant_order_page(merchant=merchant, filters=OrderFilters()).next_cursor
    phone_tail = CreditOrder.objects.filter(merchant=merchant).select_related("consumer").first().consumer.phone[-4:]
    pages: list[tuple[str, Any]] = [
        ("order_list", lambda i: orders_url),
        ("order_list_page2", lambda i: f"{orders_url}?{urllib.parse.urlencode({'after': cursor})}"),
        ("order_list_overdue", lambda i: f"{orders_url}?status=overdue&sort=-amount"),
        ("order_list_phone_tail", lambda i: f"{orders_url}?q={phone_tail}"),
        ("order_list_htmx_30d", lambda i: f"{orders_url}?created_from={_days_ago(30)}&status=paid"),
        ("order_detail", lambda i: reverse("merchant:order_detail", args=[detail_ids[i % len(detail_ids)]])),
        ("dashboard", lambda i: reverse("merchant:dashboard")),
    ]
    results = []
    for name, url_for in pages:
        headers = {"HX-Request": "true"} if "htmx" in name else {}
        for i in range(3):
            assert client.get(url_for(i), headers=headers, secure=True).status_code == 200, name
        timings, db_times, queries = [], [], 0
        for i in range(runs):
            url = url_for(i + 3)
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url, headers=headers, secure=True)
                timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (name, response.status_code)
            queries = len(captured)
            db_times.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
        results.append(
            {
                "page": name,
                "p50_ms": round(statistics.median(timings), 1),
                "p95_ms": round(percentile(timings, 0.95), 1),
                "queries": queries,
                "db_p50_ms": round(statistics.median(db_times), 1),
            }
        )
    return results


def trigger_cost(runs: int) -> list[dict[str, Any]]:
    """What the dashboard roll-up's UPDATE trigger adds to a write: the same UPDATE with it enabled and disabled.

    Statements shaped like the charge run's bulk recording (``_UPDATE_ORDERS``: 200 completed orders of the last
    30 days, of every merchant, marked paid) and like a service's single-order transition, each ``runs`` times in a
    savepoint rolled back, in one transaction that is rolled back at the end (the trigger is disabled only inside
    it). Median ms per statement.
    """
    from django.db import connection, transaction

    update = (
        "UPDATE bnpl_creditorder SET status = 'paid', paid_at = now(), charged_at = now(), hold_amount = 0, "
        "charge_in_flight = false, next_attempt_at = NULL, updated_at = now() WHERE id = ANY(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM bnpl_creditorder WHERE status = 'completed' AND created_at > now() - interval '30 days' "
            "ORDER BY random() LIMIT 200"
        )
        ids = [row[0] for row in cursor.fetchall()]
    results = []
    for label, chosen in (("update_200_orders", ids), ("update_1_order", ids[:1])):
        medians = {}
        for enabled in (False, True, False, True):
            timings = []
            with transaction.atomic(), connection.cursor() as cursor:
                if not enabled:
                    cursor.execute("ALTER TABLE bnpl_creditorder DISABLE TRIGGER bnpl_creditorder_day_stats_update")
                for _ in range(runs):
                    savepoint = transaction.savepoint()
                    t0 = time.perf_counter()
                    cursor.execute(update, [chosen])
                    timings.append((time.perf_counter() - t0) * 1000)
                    transaction.savepoint_rollback(savepoint)
                transaction.set_rollback(True)
            medians.setdefault(enabled, []).append(statistics.median(timings))
        results.append(
            {
                "page": f"trigger_cost_{label}",
                "rows": len(chosen),
                "without_trigger_ms": round(min(medians[False]), 2),
                "with_trigger_ms": round(min(medians[True]), 2),
            }
        )
    results.append(fold_cost())
    return results


def fold_cost() -> dict[str, Any]:
    """A burst of charge-run-like writes, then the fold: deltas written, fold time, the dashboard before and after.

    Up to 20,000 completed or collecting orders of the last 40 days marked paid, 200 per UPDATE (one transaction,
    rolled back at the end, so the data set is unchanged).
    """
    from django.db import connection, transaction

    from bnpl.merchant_portal.day_stats import day_stats_fold
    from bnpl.merchant_portal.selectors import merchant_dashboard
    from merchants.models import Merchant

    merchant = Merchant.objects.order_by("pk").first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM bnpl_creditorder WHERE status IN ('completed', 'collecting') "
            "AND created_at > now() - interval '40 days' ORDER BY random() LIMIT 20000"
        )
        ids = [row[0] for row in cursor.fetchall()]
        t0 = time.perf_counter()
        for start in range(0, len(ids), 200):
            cursor.execute(
                "UPDATE bnpl_creditorder SET status = 'paid', paid_at = now(), charged_at = now(), hold_amount = 0, "
                "charge_attempt_count = charge_attempt_count + 1 WHERE id = ANY(%s)",
                [ids[start : start + 200]],
            )
        t1 = time.perf_counter()
        cursor.execute("SELECT count(*) FROM bnpl_merchantdaydelta")
        deltas = cursor.fetchone()[0]
        merchant_dashboard(merchant=merchant)
        t2 = time.perf_counter()
        merchant_dashboard(merchant=merchant)
        t3 = time.perf_counter()
        report = day_stats_fold()
        t4 = time.perf_counter()
        merchant_dashboard(merchant=merchant)
        t5 = time.perf_counter()
        transaction.set_rollback(True)
    return {
        "page": "fold_cost",
        "orders_updated": len(ids),
        "statements": (len(ids) + 199) // 200,
        "updates_s": round(t1 - t0, 2),
        "deltas": deltas,
        "fold_ms": round((t4 - t3) * 1000, 1),
        "rollup_rows_written": report["days"],
        "dashboard_unfolded_ms": round((t3 - t2) * 1000, 1),
        "dashboard_folded_ms": round((t5 - t4) * 1000, 1),
    }


def _days_ago(days: int) -> str:
    from django.utils import timezone

    return (timezone.localdate() - __import__("datetime").timedelta(days=days)).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--merchant-orders", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=50)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--database", default=BENCH_DB, help="the bench database's name (default: %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="drop the bench database and build it again")
    parser.add_argument(
        "--trigger-cost",
        action="store_true",
        help="instead of the pages: an UPDATE of 200 orders and of one with the roll-up trigger and without, "
        "and a burst of writes then the fold",
    )
    args = parser.parse_args()
    prepare_database(args.database, args.rebuild)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not shape_matches(args.orders, args.merchant_orders, args.merchants):
        log(f"building {args.orders} orders ({args.merchant_orders} for merchant #1) …")
        build(args.orders, args.merchant_orders, args.merchants)
    else:
        log("reusing the data set")
    for line in trigger_cost(args.runs) if args.trigger_cost else measure(args.runs):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
