"""``bench/generate.py`` at a small size: the parallel load is consistent, and the same with one loader or two.

Nothing here is timed (the figures are the benchmark's, docs/performance.md). What is checked is what the
speed must not cost: the script forks two loader processes that COPY blocks of orders on their own
connections and rebuilds indexes and constraints on two connections, and it must still leave a data set
that passes its own checks (it exits non-zero otherwise), with every constraint and trigger back as the
migrations declare them, and with the same orders and ledger as a load by one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--merchants", "12", "--listings", "40", "--consumers", "400", "--orders", "3000", "--due", "60"]

# Constraints and triggers as the catalogue shows them (indexes print their predicates in a normalised form
# after a rebuild, so they are compared by name and table). The cache table is the test run's own
# (``createcachetable``), not a migration's.
SCHEMA = {
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated, condeferrable,
               condeferred
        FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace AND conrelid IS DISTINCT FROM to_regclass('django_q_cache')
        ORDER BY 1, 2""",
    "indexes": """
        SELECT indrelid::regclass::text, indexrelid::regclass::text, indisunique, indisvalid
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relnamespace = 'public'::regnamespace AND indrelid IS DISTINCT FROM to_regclass('django_q_cache')
        ORDER BY 1, 2""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2""",
}
# What the data set is made of, without the load's wall-clock times or the ids of rows nothing refers to by id
# in the generator (ledger entries take theirs in the order the blocks finish): orders, postings, profiles, queue.
FINGERPRINT = {
    "orders": """
        SELECT md5(string_agg(concat_ws('|', id, merchant_id, listing_id, consumer_id, status, amount_due,
                                        hold_amount, dpd_bucket, charge_failure_count), ',' ORDER BY id))
        FROM bnpl_creditorder""",
    "ledger": """
        SELECT md5(string_agg(concat_ws('|', t.id, t.kind, t.order_id, e.account_id, e.amount), ','
                              ORDER BY t.id, e.account_id, e.amount))
        FROM bnpl_ledgertransaction t JOIN bnpl_ledgerentry e ON e.transaction_id = t.id""",
    "profiles": """
        SELECT md5(string_agg(concat_ws('|', consumer_id, score, credit_limit_amount, open_exposure_amount,
                                        is_paused, paused_reason), ',' ORDER BY consumer_id))
        FROM consumers_creditprofile""",
    "queue": """
        SELECT count(*), md5(string_agg(concat_ws('|', q.account_id, e.transaction_id, e.amount), ','
                                        ORDER BY e.transaction_id, e.amount))
        FROM bnpl_unsettledentry q JOIN bnpl_ledgerentry e ON e.id = q.entry_id""",
}


def _server() -> dict:
    db = settings.DATABASES["default"]
    params = {"user": db.get("USER") or "postgres", "dbname": "postgres", "autocommit": True}
    for key, param in (("HOST", "host"), ("PORT", "port"), ("PASSWORD", "password")):
        if db.get(key):
            params[param] = str(db[key])
    return params


def _generate(database: str, workers: int) -> dict:
    done = subprocess.run(
        [sys.executable, "bench/generate.py", *SMALL, "--block", "500", "--workers", str(workers),
         "--database", database],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _read(database: str, queries: dict[str, str]) -> dict[str, list[tuple]]:
    with psycopg.connect(**{**_server(), "dbname": database}) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    names = (f"bnpl_gentest_{os.getpid()}_one", f"bnpl_gentest_{os.getpid()}_two")
    yield names
    with psycopg.connect(**_server()) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db
def test_two_loaders_load_the_same_consistent_data_set_as_one(databases):
    one, two = databases

    by_one = _generate(one, workers=1)
    by_two = _generate(two, workers=2)  # six blocks of 500 orders and the parties, on two forked loaders

    assert by_one["rows"] == by_two["rows"] > 3000
    assert _read(one, FINGERPRINT) == _read(two, FINGERPRINT)
    # Rebuilt from the catalogue: the test database (migrated, never loaded) has the same schema objects.
    with connection.cursor() as cursor:
        migrated = {}
        for name, sql in SCHEMA.items():
            cursor.execute(sql)
            migrated[name] = cursor.fetchall()
    assert _read(two, SCHEMA) == migrated
