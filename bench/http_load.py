"""HTTP load test (not a test) of the merchant API and portal pages under gunicorn, driven by wrk.

    .venv/bin/python bench/http_load.py                          # 20 s per endpoint, 16 connections
    .venv/bin/python bench/http_load.py --duration 8 --connections 8 --only admission healthz

Runs in its own database (``bnpl_hl``, or ``--database``, on the server DATABASE_URL names, or on the embedded
server), which it drops and migrates first, with production-like settings (``bench/benchdb.py``: DEBUG off, persistent
connections as a deployment sets them, quiet logs) and ``collectstatic`` (DEBUG off serves the hashed files
through whitenoise, as in production). It seeds, through the services, one approved merchant with a live API
key and an agreement-mode listing, ``--consumers`` consumers each with a signed agreement and one active
order (consumer #0 has five, the policy's most open orders at one merchant: the order pages and usage use
these), and logged-in sessions for the merchant's owner and consumer #0; then, by COPY, the state
``agreement_sign`` leaves for ``--admission-consumers`` more (credit profile, valid agreement), whom the
admission run orders for: each can take five orders before the policy declines them for too many open
orders at one merchant (a declined order is still a full, stored decision; the check prints the mix).

gunicorn runs as docs/operations.md deploys it (``gunicorn bnpl.wsgi --workers 4``, sync workers) on a free
local port. The load generator is wrk (Debian's ``wrk``, C, epoll; its CPU use is small next to the
server's, which matters on a shared two-core machine): one run per endpoint, ``--connections`` connections
kept busy (closed loop) for ``--duration`` seconds after a two-second warm-up that is not counted. POSTs are
built per request by a generated Lua script: a fresh ``Idempotency-Key`` and ``out_order_no`` /
``merchant_event_id`` each time, spread over the seeded consumers and orders.

Rate limits: the API's per-key limit (``BNPL_API_RATE_LIMIT_LIVE``, 100 requests/s by default, docs/api.md
§5) would answer most of this load with 429, so the server runs with ``BNPL_API_RATE_LIMIT_LIVE=1000000``;
the counter itself (one ``INSERT … ON CONFLICT`` per request) is still written, so its cost is measured.
No other throttle is on these paths (django-axes and the sign-up limiters count log-ins and sign-ups only).

Endpoints: the baseline first — a static file through whitenoise (no view, no database: what the server
stack does with no app work) and ``/healthz`` (one database round trip and the scheduler check) — then
``GET /api/v1/orders``, ``GET /api/v1/orders/{id}``, ``/me/orders/`` (consumer), ``/merchant/orders/``
(merchant owner), ``POST /api/v1/orders/{id}/usage`` (one event) and ``POST /api/v1/orders`` under the
agreement, which assesses the consumer at once: each request is one admission decision, stored. Afterwards
the database is checked: one stored decision per order, and as many orders and usage events as 201
answers (plus at most one per connection still in flight when wrk stopped counting).

The admission figures are set against the issue's target (≥ 500 decisions/s with p99 ≤ 50 ms). Figures go
to stdout with the load average; the last line is JSON:
``{"endpoints": {name: {"rps", "p50_ms", "p95_ms", "p99_ms", "errors"}}, "admission_target_met": …, …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)
from charge_run import copy_rows, reserve_ids, stop  # noqa: E402
from usage_ingest import free_port, start_gunicorn  # noqa: E402

BENCH_DB = "bnpl_hl"
#: The issue's target for admission over HTTP.
TARGET_DECISIONS_PER_S = 500
TARGET_P99_MS = 50.0
#: A per-key limit no load here reaches (docs/api.md §5: the documented setting).
RATE_LIMIT_FOR_BENCH = 1_000_000


@dataclass(frozen=True)
class Seed:
    token: str
    listing_id: int
    admission_consumer_ids: list[int]  # the COPY pool the admission run orders for
    order_ids: list[int]
    consumer_cookie: str
    merchant_cookie: str
    static_path: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    label: str
    lua: str


# --------------------------------------------------------------------------------------------------------------
# set-up


def prepare_database() -> None:
    """Drop and create the bench database; point this process and gunicorn at it, production-like."""
    use_bench_database(BENCH_DB)
    os.environ["DATABASE_CONN_MAX_AGE"] = "60"  # what a production deployment sets
    os.environ["BNPL_API_RATE_LIMIT_LIVE"] = str(RATE_LIMIT_FOR_BENCH)


def session_cookie(user: Any) -> str:
    """A logged-in session for ``user`` in the database session store, as ``name=value`` for a Cookie header."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def seed_admission_pool(n: int, *, merchant: Any, listing: Any) -> list[int]:
    """``n`` consumers with a credit profile and a signed agreement for ``listing``, written by COPY.

    The state ``agreement_sign`` leaves (without its sign-up decision): enough consumers that the
    admission run is not declined for "too many open orders at this merchant" (five each) before it ends.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from bnpl.models import Agreement
    from consumers.models import Consumer, CreditProfile

    user_model = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        user_ids = reserve_ids(user_model, n)
        copy_rows(
            user_model,
            ["id", "username", "password", "is_active", "date_joined"],
            ((uid, f"hl-pool-{i}", "!", True, now) for i, uid in enumerate(user_ids)),
        )
        consumer_ids = reserve_ids(Consumer, n)
        copy_rows(
            Consumer,
            ["id", "user_id", "phone", "phone_verified", "city"],
            (
                (cid, uid, f"137{i:08d}", True, "杭州")
                for i, (cid, uid) in enumerate(zip(consumer_ids, user_ids, strict=True))
            ),
        )
        copy_rows(
            CreditProfile,
            ["consumer_id", "score", "credit_limit_amount"],
            ((cid, 650, Decimal("1000.00")) for cid in consumer_ids),
        )
        copy_rows(
            Agreement,
            ["consumer_id", "merchant_id", "listing_id", "status", "signed_at"],
            ((cid, merchant.pk, listing.pk, "valid", now) for cid in consumer_ids),
        )
    return consumer_ids


def seed(n_consumers: int, n_pool: int) -> Seed:
    """Merchant, key, listing, ``n_consumers`` with an agreement and an active order (services), the
    admission pool of ``n_pool`` (COPY), and the two logged-in sessions."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    from django.db import connections
    from django.templatetags.static import static

    from bnpl.choices import ActorKind
    from bnpl.services import agreement_sign, credit_order_create
    from merchants.choices import ConfirmMode
    from merchants.services import api_key_create
    from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory

    merchant = MerchantFactory(display_name="bench http")
    owner = MerchantMemberFactory(merchant=merchant).user
    listing = ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
    consumers, order_ids = [], []
    for i in range(n_consumers):
        consumer = ConsumerFactory()
        agreement_sign(actor=None, consumer=consumer, listing=listing)
        for j in range(5 if i == 0 else 1):  # 5: the policy's open orders per merchant
            order = credit_order_create(
                actor=None,
                actor_kind=ActorKind.MERCHANT,
                merchant=merchant,
                listing=listing,
                out_order_no=f"SEED-{i}-{j}",
                consumer=consumer,
            )
            if order.status != "active":
                raise SystemExit(f"seed order {order.pk} is {order.status}, expected active")
            order_ids.append(order.pk)
        consumers.append(consumer)
    pool = seed_admission_pool(n_pool, merchant=merchant, listing=listing)
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics after the bulk load, as the other benches do
    _key, token = api_key_create(actor=None, merchant=merchant, mode="live", label="bench http")
    result = Seed(
        token=token,
        listing_id=listing.pk,
        admission_consumer_ids=pool,
        order_ids=order_ids,
        consumer_cookie=session_cookie(consumers[0].user),
        merchant_cookie=session_cookie(owner),
        static_path=static("css/site.css"),
    )
    connections.close_all()
    return result


# --------------------------------------------------------------------------------------------------------------
# wrk scripts: one per endpoint, each reporting its figures as one JSON line


_LUA_COMMON = r"""
local threads = {}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  statuses = {}
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status > 399 and first_error == nil then
    first_error = key .. " " .. string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + count
    end
  end
  local codes = {}
  for code, count in pairs(merged) do
    table.insert(codes, string.format('"%s": %d', code, count))
  end
  local first = ""
  for _, thread in ipairs(threads) do
    first = thread:get("first_error") or first
  end
  io.write("WRKERROR " .. first .. "\n")
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, "status": {%s}}\n',
    summary.requests, summary.duration, math.floor(latency:percentile(50)), math.floor(latency:percentile(95)),
    math.floor(latency:percentile(99)), latency.max, e.connect, e.read, e.write, e.timeout,
    table.concat(codes, ", ")))
end
"""


def lua_get(path: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "GET"', f"wrk.path = {json.dumps(path)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _LUA_COMMON


def lua_table(values: list[int]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"


def lua_post(nonce: str, seed: Seed, *, kind: str) -> str:
    """A ``request()`` that builds each POST anew: its own Idempotency-Key and merchant reference.

    The reference names the endpoint too: idempotency keys are per merchant, across endpoints.
    """
    auth = json.dumps(f"Bearer {seed.token}")
    if kind == "admission":
        body = (
            "local consumer = consumers[(n * 7 + tid * 13) % #consumers + 1]\n"
            '  local path = "/api/v1/orders"\n'
            '  local body = string.format(\'{"listing_id": %d, "out_order_no": "%s", "consumer_id": %d, '
            '"max_amount": "5.00"}\', listing, ref, consumer)'
        )
    else:
        body = (
            "local order = orders[(n * 7 + tid * 13) % #orders + 1]\n"
            '  local path = "/api/v1/orders/" .. order .. "/usage"\n'
            '  local body = string.format(\'{"merchant_event_id": "%s", "quantity": "0.25", '
            '"occurred_at": "2026-11-25T20:00:00+08:00"}\', ref)'
        )
    return (
        f"""
local consumers = {lua_table(seed.admission_consumer_ids)}
local orders = {lua_table(seed.order_ids)}
local listing = {seed.listing_id}
local auth = {auth}
request = function()
  n = n + 1
  local ref = string.format("hl-{nonce}-{kind}-%d-%d", tid, n)
  {body}
  local headers = {{["Authorization"] = auth, ["Content-Type"] = "application/json", ["Idempotency-Key"] = ref}}
  return wrk.format("POST", path, headers, body)
end
"""
        + _LUA_COMMON
    )


def lua_order_detail(seed: Seed) -> str:
    return (
        f"""
local orders = {lua_table(seed.order_ids)}
local headers = {{["Authorization"] = {json.dumps(f"Bearer {seed.token}")}}}
request = function()
  n = n + 1
  return wrk.format("GET", "/api/v1/orders/" .. orders[(n * 7 + tid * 13) % #orders + 1], headers)
end
"""
        + _LUA_COMMON
    )


def endpoints(seed: Seed, nonce: str) -> list[Endpoint]:
    auth = {"Authorization": f"Bearer {seed.token}"}
    return [
        Endpoint("static", f"GET {seed.static_path} (whitenoise, baseline)", lua_get(seed.static_path, {})),
        Endpoint("healthz", "GET /healthz (baseline: one DB round trip)", lua_get("/healthz", {})),
        Endpoint("orders_list", "GET /api/v1/orders?limit=20", lua_get("/api/v1/orders?limit=20", auth)),
        Endpoint("order_detail", "GET /api/v1/orders/{id}", lua_order_detail(seed)),
        Endpoint(
            "me_orders", "GET /me/orders/ (consumer session)", lua_get("/me/orders/", {"Cookie": seed.consumer_cookie})
        ),
        Endpoint(
            "merchant_orders",
            "GET /merchant/orders/ (owner session)",
            lua_get("/merchant/orders/", {"Cookie": seed.merchant_cookie}),
        ),
        Endpoint("usage_event", "POST /api/v1/orders/{id}/usage (one event)", lua_post(nonce, seed, kind="usage")),
        Endpoint(
            "admission", "POST /api/v1/orders (agreement: assessed at once)", lua_post(nonce, seed, kind="admission")
        ),
    ]


# --------------------------------------------------------------------------------------------------------------
# running wrk


def run_wrk(wrk: str, url: str, script: Path, *, duration: int, connections: int, threads: int) -> dict[str, Any]:
    command = [
        wrk,
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={duration}s",
        "--timeout=10s",
        f"--script={script}",
        url,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("WRKERROR ") and line.strip() != "WRKERROR":
            print(f"    first error answer: {line.removeprefix('WRKERROR ')[:300]}", flush=True)
        if line.startswith("WRKJSON "):
            return json.loads(line.removeprefix("WRKJSON "))
    raise SystemExit(f"wrk gave no figures (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}")


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    ok = sum(count for code, count in raw["status"].items() if code.startswith(("2", "3")))
    socket_errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 1),
        "p95_ms": round(raw["p95_us"] / 1000, 1),
        "p99_ms": round(raw["p99_us"] / 1000, 1),
        "requests": raw["requests"],
        "ok": ok,
        "errors": raw["requests"] - ok + socket_errors,
        "status": raw["status"],
    }


def check_database(nonce: str, results: dict[str, dict[str, Any]], in_flight: int) -> list[str]:
    """One stored decision per created order; as many orders and events as 2xx answers.

    wrk stops counting at the end of its run while up to ``in_flight`` requests (one per connection) are
    still being served; those complete on the server, so the database may hold that many more rows.
    """
    from django.db import connections
    from django.db.models import Count

    from bnpl.models import CreditOrder, UsageEvent
    from scoring.models import AdmissionDecision

    connections.close_all()
    lines = []
    if "admission" in results:
        created = CreditOrder.objects.filter(out_order_no__startswith=f"hl-{nonce}-admission-")
        statuses = {row["status"]: row["n"] for row in created.values("status").annotate(n=Count("id"))}
        decisions = AdmissionDecision.objects.filter(pk__in=created.values("decision_id")).count()
        answered = results["admission"]["status"].get("201", 0)
        lines.append(
            f"orders created {created.count()} ({statuses}); decisions stored {decisions}; HTTP 201 {answered}"
        )
        if decisions != created.count() or not 0 <= created.count() - answered <= in_flight:
            raise SystemExit("orders, stored decisions and 201 answers do not match")
    if "usage_event" in results:
        stored = UsageEvent.objects.filter(merchant_event_id__startswith=f"hl-{nonce}-usage-").count()
        answered = sum(v for k, v in results["usage_event"]["status"].items() if k.startswith("2"))
        lines.append(f"usage events stored {stored}; HTTP 2xx {answered}")
        if not 0 <= stored - answered <= in_flight:
            raise SystemExit("usage events in the database and accepted answers do not match")
    return lines


def main() -> None:
    global BENCH_DB  # prepare_database() and the messages read the module's name
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per endpoint (default 20)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--server-workers", type=int, default=4, help="gunicorn sync workers (default 4)")
    parser.add_argument("--consumers", type=int, default=100, help="consumers with an active order (default 100)")
    parser.add_argument(
        "--admission-consumers", type=int, default=20000, help="consumers the admission run orders for (default 20000)"
    )
    parser.add_argument("--only", nargs="*", help="run only these endpoints (names as in the table)")
    parser.add_argument(
        "--database", default=BENCH_DB, help=f"the bench database, dropped and re-created (default {BENCH_DB})"
    )
    args = parser.parse_args()
    BENCH_DB = args.database

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    load_before = os.getloadavg()
    prepare_database()
    print(
        f"seeding {BENCH_DB}: {args.consumers} consumers with an active order (services), "
        f"{args.admission_consumers} with an agreement (COPY) …",
        flush=True,
    )
    started = time.perf_counter()
    seeded = seed(args.consumers, args.admission_consumers)
    print(f"    seeded in {time.perf_counter() - started:.1f} s", flush=True)
    # Warm-up and measured runs get different references, so the measured ones can be counted exactly.
    warm_nonce, nonce = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    chosen = [
        (warm, measured)
        for warm, measured in zip(endpoints(seeded, warm_nonce), endpoints(seeded, nonce), strict=True)
        if not args.only or measured.name in args.only
    ]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A generous start-up allowance: four workers importing Django on a busy two-core machine are slow.
    server = start_gunicorn(port, workers=args.server_workers, extra_args=("--backlog", "2048"), ready_timeout_s=300)
    results: dict[str, dict[str, Any]] = {}
    try:
        print(
            f"gunicorn bnpl.wsgi: {args.server_workers} sync workers on port {port}, DEBUG off, "
            f"BNPL_API_RATE_LIMIT_LIVE={RATE_LIMIT_FOR_BENCH}; wrk {args.wrk_threads} threads, "
            f"{args.connections} connections, {args.duration} s per endpoint (+2 s warm-up)",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            for warm, endpoint in chosen:
                script = Path(tmp) / f"{endpoint.name}.lua"
                script.write_text(warm.lua)
                run_wrk(wrk, base, script, duration=2, connections=args.connections, threads=args.wrk_threads)
                script.write_text(endpoint.lua)
                raw = run_wrk(
                    wrk, base, script, duration=args.duration, connections=args.connections, threads=args.wrk_threads
                )
                results[endpoint.name] = figures(raw)
                r = results[endpoint.name]
                print(
                    f"  {endpoint.name:<16} {r['rps']:>8,.1f} req/s  p50 {r['p50_ms']:>7.1f}  p95 {r['p95_ms']:>7.1f}  "
                    f"p99 {r['p99_ms']:>7.1f} ms  errors {r['errors']:>5}  {endpoint.label}",
                    flush=True,
                )
                if r["ok"] == 0:
                    raise SystemExit(f"{endpoint.name}: no successful answer ({r['status']})")
    finally:
        stop(server)

    for line in check_database(nonce, results, args.connections):
        print(f"  check: {line}")
    load_after = os.getloadavg()
    summary: dict[str, Any] = {
        "endpoints": {
            name: {key: r[key] for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "errors")}
            for name, r in results.items()
        },
        "connections": args.connections,
        "server_workers": args.server_workers,
        "duration_s": args.duration,
        "load_avg": [round(load_before[0], 2), round(load_after[0], 2)],
    }
    if "admission" in results:
        adm = results["admission"]
        met = adm["rps"] >= TARGET_DECISIONS_PER_S and adm["p99_ms"] <= TARGET_P99_MS
        print(
            f"admission over HTTP: {adm['rps']:,.1f} decisions/s, p99 {adm['p99_ms']} ms — target "
            f"≥ {TARGET_DECISIONS_PER_S}/s with p99 ≤ {TARGET_P99_MS:.0f} ms: {'met' if met else 'NOT met'}"
        )
        summary["admission_target_met"] = met
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
