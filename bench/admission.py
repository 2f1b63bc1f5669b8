"""Benchmark of the admission decision (not a test): decisions per second and latency, in-process.

    .venv/bin/python bench/admission.py                     # 1,000,000 consumers
    .venv/bin/python bench/admission.py --consumers 100000 --decisions 20000
    .venv/bin/python bench/admission.py --reuse             # keep the population from the last run

Runs in its own database (``bnpl_bench_admission`` on the server DATABASE_URL names, or on the embedded
server), which it drops, creates and migrates first (``--reuse`` keeps it when it already holds the same
population). The population is written with COPY: users, consumers, credit profiles across the score
bands, feature rows for three quarters of them (the rest have never ordered), 200 listings of 50
merchants, and a blocklist of 1 % of phone numbers.

Each decision is a call of ``scoring.services.admission_assess`` for a random consumer and listing, timed
from the call to its return, so the stored decision row (its INSERT and commit) is included. Figures go
to stdout, with where the time goes (SQL by statement and Python); the last line is JSON:
``{"decisions": N, "per_s": …, "p50_ms": …, "p99_ms": …}``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)

BENCH_DB = "bnpl_bench_admission"
SEED = 20261125


# --------------------------------------------------------------------------------------------------------------
# database set-up, before Django is configured


def prepare_database(*, reuse: bool) -> bool:
    """Create (or with ``reuse`` keep) the bench database and point Django at it; True when it was kept."""
    _url, kept = use_bench_database(BENCH_DB, drop=not reuse)
    return kept


# --------------------------------------------------------------------------------------------------------------
# population, by COPY


def copy_rows(model: Any, attnames: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """COPY ``rows`` (values for ``attnames``) into ``model``'s table; other columns get the model's defaults.

    Generated columns and database defaults are left to the database, so a column added to a model later
    still gets a valid value here.
    """
    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    given = set(attnames)
    columns = [model._meta.get_field(name).column for name in attnames]
    constants: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.attname in given or field.primary_key or field.generated or field.has_db_default():
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        elif field.has_default() or not field.null:
            value = field.get_default()
        else:
            value = None
        columns.append(field.column)
        constants.append(field.get_db_prep_save(value, connection))
    sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row([*row, *constants])


def _set_sequence(model: Any) -> None:
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")


def build_population(n: int) -> None:
    """``n`` consumers with profiles (and most with features), merchants, listings and a blocklist."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from consumers.models import Consumer, CreditProfile
    from merchants.choices import MerchantCategory, MerchantStatus, Scenario
    from merchants.models import Listing, Merchant
    from scoring.models import BlocklistEntry, ConsumerFeatures

    rng = random.Random(SEED)
    now = timezone.now()
    user_model = get_user_model()
    scenarios = [s.value for s in Scenario]
    started = time.perf_counter()
    with transaction.atomic():
        merchants = Merchant.objects.bulk_create(
            Merchant(
                legal_name=f"压测商户{i}有限公司",
                display_name=f"压测商户{i}",
                uscc=f"91330106MB{i:07d}X",
                contact_name="压测",
                contact_phone=f"1390000{i:04d}",
                categories=[MerchantCategory.EBIKE_CHARGING.value],
                settlement_bank_name="招商银行",
                settlement_account_name=f"压测商户{i}有限公司",
                settlement_account_number="6225880123456789",
                status=MerchantStatus.APPROVED,
            )
            for i in range(50)
        )
        Listing.objects.bulk_create(
            Listing(
                merchant=merchants[i % 50],
                title=f"压测服务{i}",
                scenario=scenarios[i % len(scenarios)],
                max_amount=Decimal(rng.choice(["20.00", "50.00", "100.00", "300.00"])),
                min_score=rng.choice([500, 550, 600, 650]),
                pricing_rule={"kind": "fixed", "amount": "20.00"},
            )
            for i in range(200)
        )
        copy_rows(
            user_model,
            ["id", "username", "password", "is_active", "date_joined"],
            ((i, f"bench{i}", "!", True, now) for i in range(1, n + 1)),
        )
        copy_rows(
            Consumer,
            ["id", "user_id", "phone", "phone_verified", "created_at"],
            (
                (i, i, f"13{i:09d}", rng.random() < 0.95, now - timedelta(days=rng.randint(0, 900)))
                for i in range(1, n + 1)
            ),
        )

        def profile_rows():
            for i in range(1, n + 1):
                score = max(350, min(950, int(rng.gauss(640, 60))))
                limit = Decimal(rng.choice(["200.00", "500.00", "1000.00", "2000.00", "3000.00"]))
                exposure = (limit * Decimal(rng.choice(["0", "0", "0.1", "0.4", "0.9"]))).quantize(Decimal("0.01"))
                paused = rng.random() < 0.01
                yield (i, i, score, limit, exposure, paused, "overdue order" if paused else "", now)

        copy_rows(
            CreditProfile,
            [
                "id",
                "consumer_id",
                "score",
                "credit_limit_amount",
                "open_exposure_amount",
                "is_paused",
                "paused_reason",
                "updated_at",
            ],
            profile_rows(),
        )

        def feature_rows():
            for i in range(1, n + 1):
                if rng.random() < 0.25:
                    continue  # never ordered: no feature row yet
                kept = rng.randint(0, 40)
                breached = rng.choice([0, 0, 0, 0, 1, 2])
                merchant = rng.randint(merchants[0].pk, merchants[-1].pk)
                yield (
                    i,
                    kept,
                    rng.randint(0, 5),
                    breached,
                    min(breached, rng.randint(0, 2)),
                    rng.choice([0, 0, 5, 40]) if breached else 0,
                    now - timedelta(days=rng.randint(1, 400)) if breached else None,
                    kept + breached + rng.randint(0, 5),
                    now - timedelta(days=rng.randint(30, 800)),
                    now - timedelta(days=rng.randint(0, 60)),
                    rng.randint(0, 3),
                    json.dumps({str(merchant): 1}),
                    [now - timedelta(hours=rng.randint(0, 30))],
                    json.dumps({rng.choice(scenarios): kept}),
                    list(range(1, rng.randint(1, 6))),
                )

        copy_rows(
            ConsumerFeatures,
            [
                "consumer_id",
                "fulfilled_count",
                "cancelled_count",
                "breached_count",
                "recovered_count",
                "worst_dpd",
                "last_breach_at",
                "orders_total",
                "first_order_at",
                "last_order_at",
                "open_orders",
                "open_by_merchant",
                "recent_order_times",
                "scenario_counts",
                "kept_merchant_ids",
            ],
            feature_rows(),
        )
        copy_rows(
            BlocklistEntry,
            ["kind", "value", "reason", "created_at"],
            (("phone", f"13{i:09d}", "bench", now) for i in range(1, n + 1, 100)),
        )
        for model in (user_model, Consumer, CreditProfile):
            _set_sequence(model)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"population: {n} consumers in {time.perf_counter() - started:.1f}s", flush=True)


# --------------------------------------------------------------------------------------------------------------
# measurement


class SqlTimer:
    """A database execute wrapper that adds up the time spent in each kind of statement."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            kind = self.kind(sql)
            self.seconds[kind] += time.perf_counter() - started
            self.count[kind] += 1

    @staticmethod
    def kind(sql: str) -> str:
        head = sql.lstrip()[:200]
        if head.startswith("INSERT"):
            return "insert decision"
        if "LEFT JOIN" in sql and "consumers_consumer" in sql:
            return "read consumer+profile+features+blocklist+card"
        if "merchants_listing" in sql:
            return "read listing+merchant"
        return "other"


def measure(decisions: int, n_consumers: int) -> dict[str, Any]:
    from django.db import connection

    from consumers.models import Consumer
    from merchants.models import Listing
    from scoring.services import admission_assess

    rng = random.Random(SEED + 1)
    listing_ids = list(Listing.objects.values_list("pk", flat=True))
    amounts = [Decimal("5.00"), Decimal("20.00"), Decimal("50.00")]

    def one() -> float:
        consumer = Consumer(pk=rng.randint(1, n_consumers))
        listing = Listing(pk=rng.choice(listing_ids))
        started = time.perf_counter()
        admission_assess(consumer=consumer, listing=listing, amount=rng.choice(amounts), channel="order")
        return time.perf_counter() - started

    for _ in range(min(500, decisions)):  # warm up: connection, compiled card, plan cache
        one()
    timer = SqlTimer()
    latencies = []
    with connection.execute_wrapper(timer):
        wall = time.perf_counter()
        for _ in range(decisions):
            latencies.append(one())
        wall = time.perf_counter() - wall
    latencies.sort()
    total = sum(latencies)
    sql_total = sum(timer.seconds.values())
    print(f"decisions: {decisions} in {wall:.2f}s on one connection", flush=True)
    for kind in sorted(timer.seconds, key=timer.seconds.get, reverse=True):
        share = timer.seconds[kind] / total
        per = timer.seconds[kind] / max(timer.count[kind], 1) * 1000
        print(f"  {kind:<48} {per:7.3f} ms/stmt  {share:6.1%} of the time", flush=True)
    print(f"  {'python (features, scorecard, policy, ORM)':<48} {'':>15}  {1 - sql_total / total:6.1%} of the time")
    return {
        "decisions": decisions,
        "per_s": round(decisions / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--reuse", action="store_true", help="Keep the bench database if it holds the population.")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="SET synchronous_commit TO off for the session: shows how much of the time is the WAL flush.",
    )
    args = parser.parse_args(argv)

    kept = prepare_database(reuse=args.reuse)
    import django

    django.setup()
    from django.core.management import call_command

    from consumers.models import Consumer

    call_command("migrate", verbosity=0)
    if not kept or Consumer.objects.count() != args.consumers:
        if kept:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE auth_user, merchants_merchant, scoring_blocklistentry CASCADE")
        build_population(args.consumers)
    if args.async_commit:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        print("synchronous_commit off (the commit does not wait for the WAL flush)", flush=True)
    print(json.dumps(measure(args.decisions, args.consumers)))


if __name__ == "__main__":
    main()
