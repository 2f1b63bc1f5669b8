"""A whole platform's history, bulk-loaded with COPY: the data set the growth benchmark runs on (not a test).

    .venv/bin/python bench/generate.py --merchants 40000 --listings 1400000 --consumers 1000000 --orders 5000000
    .venv/bin/python bench/generate.py --orders 200000 --consumers 20000 --merchants 400 --listings 14000 \\
        --due 2000 --database bnpl_gen_quick                                            # make bench's quick size

Drops and creates ``--database`` (default ``bnpl_gen``) on the server DATABASE_URL names (or the embedded
server), migrates it, then loads with ``--workers`` loader processes (default: one per core, at most 4), each
COPYing blocks of 100,000 orders with all their rows, one transaction per block:

* approved merchants, each with an owner (user + membership), a fee rate (0.45 %–1 %), a merchant-payable
  ledger account and ``--listings`` listings spread over them, in the four scenarios with the demo's pricing rules
  (per hour with a 24-hour cap, express first weight + per kg, per visit and tiered per minute, fixed price);
* consumers (user, phone), each with a credit profile (score, the limit of its band, the exposure its open orders
  hold, paused when an order is overdue), a default sandbox card (2 % frozen, 3 % empty) and a receivable account;
* ``--orders`` credit orders over ``--days`` days, in the states and ages of a running platform: ~84 % paid
  (8 % of them after one declined attempt), refunds (full and partial, with their Refund rows), cancelled,
  expired, declined, a few active or completed and not yet due, collecting within the grace period, overdue
  across M0…M3+ (guaranteed), written off — and exactly ``--due`` completed orders due now: the charge
  run's work. Every retry of a collecting or overdue order is scheduled 12 to 24 hours after the load, so for
  12 hours the due set is exactly those orders, whatever the size of the history;
* per order what the services would have written: bill lines, charge attempts, refunds, ledger transactions and
  their entries (completion, charge, fee, refund, guarantee, write-off; each balanced, at its historical posting
  time) and promise records (fulfilled, breached, cancelled).

Not generated: order events (the timeline), agreements, settlement batches and payouts (every payable entry is
still unsettled and queued for settlement, the queue filled after the load by migration 0015's backfill: a
merchant never settled, settlement's worst case; the merchant dashboard's daily roll-up is rebuilt from the orders
after the load, as its disabled triggers would have kept it), the sandbox provider's own charge rows, scoring features,
reward accounts, audit rows. Times are to the minute.

How the load is fast and still checked (docs/performance.md, "Generated data set"): the loaded tables'
secondary indexes, unique constraints and foreign keys are dropped and their user triggers disabled
(``bench/copyload.py``, what pg_restore does), rows are COPYed as text, then every index is rebuilt and every
constraint re-added from the catalogue's own definitions, ``--workers`` at a time — re-adding a foreign key or
a unique constraint validates every row, so a violation fails the load. The database is the generator's own:
a load that fails leaves it incomplete (the error says so) and the next run drops and creates it again. Block
``b`` draws from a random generator seeded with (seed, b) and its order and ledger-transaction ids are reserved
before the load, so the data set is the same whatever the number of workers (only the ids of rows nothing refers
to, such as bill lines, follow the order in which the blocks finish). The ledger triggers are off during the load
(the posting-time stamp would date 13 million historical postings "now", and the balance check would run once
per row at COMMIT); ``ledger_check()`` verifies every transaction's balance after the load, and that the
triggers are back. pghistory's audit triggers are off too: generated history has no audit rows (the audit
trail records changes made through the platform, and none of these were).

Then ANALYZE, and checks: ``ledger_check()`` clean, row counts as generated, foreign keys validated, each
credit profile's exposure equal to what its open orders hold, receivables equal to the amounts still owed.
Figures on stdout; last line JSON: ``{"orders": …, "rows": …, "load_s": …, "check_s": …, "rows_per_s": …}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)
from copyload import copy_text, reserve_id_block, restore, set_aside  # noqa: E402

DAY = 86_400
HOUR = 3_600
BLOCK = 100_000  # orders generated and COPYed per task (bounded memory), unless --block says otherwise
MAX_FACTS = 4  # ledger transactions of one order at most: completion, charge, fee, refund (a write-off has 3)
PARTIES = -1  # the worker task that COPYs the merchants, listings and consumers (the others are blocks of orders)
GRACE = 72 * HOUR  # settings.BNPL_GRACE_PERIOD and BNPL_GUARANTEE_WINDOW defaults

# Status codes of a generated order (index into STATUS).
PAID, PART_REFUNDED, REFUNDED, CANCELLED, EXPIRED, DECLINED, WRITTEN_OFF, OVERDUE, COLLECTING, ACTIVE = range(10)
COMPLETED, DUE_NOW = 10, 11
STATUS = (
    "paid",
    "partially_refunded",
    "refunded",
    "cancelled",
    "expired",
    "declined",
    "written_off",
    "overdue",
    "collecting",
    "active",
    "completed",
    "completed",
)
# Cumulative shares of the history (the due-now orders are added on top): a platform charging most orders once.
MIX = (
    (0.03, DECLINED),
    (0.05, EXPIRED),
    (0.09, CANCELLED),
    (0.10, ACTIVE),
    (0.105, COMPLETED),
    (0.112, COLLECTING),
    (0.127, OVERDUE),
    (0.130, WRITTEN_OFF),
    (0.145, REFUNDED),
    (0.160, PART_REFUNDED),
    (1.0, PAID),
)
CHARGED = {PAID, PART_REFUNDED, REFUNDED}
BILLED = CHARGED | {WRITTEN_OFF, OVERDUE, COLLECTING, COMPLETED, DUE_NOW}
OWED = {OVERDUE, COLLECTING, COMPLETED, DUE_NOW}  # billed and not yet paid: the amount is held and receivable

# Two listing templates per scenario (the demo's, seed_demo): title, ceiling (fen), confirm mode, rule, min score.
TEMPLATES = {
    "ebike_charging": (
        ("电动车充电（按小时计费）", 2000, "each_time", {"kind": "per_unit", "unit": "hour", "unit_price": "1.00",
                                                          "cap_per_24h": "10.00", "round_up": True}, 550),
        ("充电免确认服务", 3000, "agreement", {"kind": "per_unit", "unit": "hour", "unit_price": "1.00",
                                                "cap_per_24h": "10.00", "round_up": True}, 600),
    ),
    "express_delivery": (
        ("先寄后付 · 同城快递", 10000, "each_time", {"kind": "express", "first_weight_kg": "1",
                                                     "first_weight_fee": "12.00", "additional_per_kg": "2.00",
                                                     "packaging_fee": "3.00", "insurance_rate": "0.005",
                                                     "insurance_min_fee": "1.00"}, 550),
        ("先寄后付 · 寄件授权", 15000, "agreement", {"kind": "express", "first_weight_kg": "1",
                                                     "first_weight_fee": "12.00", "additional_per_kg": "2.00"}, 600),
    ),
    "swimming_fitness": (
        ("游泳单次", 5000, "each_time", {"kind": "per_unit", "unit": "visit", "unit_price": "35.00"}, 550),
        ("健身房按分钟计费", 10000, "agreement", {"kind": "tiered", "unit": "minute", "tiers": [
            {"up_to": "60", "unit_price": "0.50"}, {"up_to": None, "unit_price": "0.30"}], "free_units": "10"}, 600),
    ),
    "live_shopping": (
        ("五常有机大米 5kg", 8900, "each_time", {"kind": "fixed", "price": "89.00"}, 550),
        ("羊毛围巾", 19900, "each_time", {"kind": "fixed", "price": "199.00"}, 650),
    ),
}  # fmt: skip
SCENARIOS = tuple(TEMPLATES)
FEE_BP = (60, 60, 60, 45, 100)  # merchants' fee rates in basis points: 0.60 % mostly
CITIES = ("杭州", "上海", "北京", "深圳", "成都", "武汉")
LOADED_TABLES = (
    "auth_user",
    "merchants_merchant",
    "merchants_merchantmember",
    "merchants_listing",
    "consumers_consumer",
    "consumers_creditprofile",
    "consumers_promiserecord",
    "bnpl_sandboxfundingsource",
    "bnpl_ledgeraccount",
    "bnpl_creditorder",
    "bnpl_billline",
    "bnpl_chargeattempt",
    "bnpl_refund",
    "bnpl_ledgertransaction",
    "bnpl_ledgerentry",
    "bnpl_unsettledentry",  # filled after the ledger (its trigger is off during the load)
)


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------------------
# text formatting for COPY (the hot loop: no Decimal, no datetime)


_MONEY = [f"{fen // 100}.{fen % 100:02d}" for fen in range(100_000)]


def money(fen: int) -> str:
    """Fen as a decimal string: 1234 → ``12.34``, -5 → ``-0.05`` (amounts below ¥1,000 from a table)."""
    if 0 <= fen < 100_000:
        return _MONEY[fen]
    if fen < 0:
        return "-" + money(-fen)
    return f"{fen // 100}.{fen % 100:02d}"


class Clock:
    """Epoch seconds as timestamptz text, to the minute: one string per minute, cached (tens of millions of calls)."""

    def __init__(self) -> None:
        self._minutes: dict[int, str] = {}
        self._days: dict[int, str] = {}

    def __call__(self, seconds: int | None) -> str:
        if seconds is None:
            return "\\N"
        minute = seconds // 60
        text = self._minutes.get(minute)
        if text is None:
            day, rest = divmod(minute, 1440)
            date = self._days.get(day)
            if date is None:
                date = self._days[day] = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")
            text = self._minutes[minute] = f"{date} {rest // 60:02d}:{rest % 60:02d}:00+00"
        return text


# --------------------------------------------------------------------------------------------------------------
# the shape of the platform


@dataclass(frozen=True)
class Shape:
    merchants: int
    listings: int
    consumers: int
    orders: int
    due: int
    days: int
    seed: int
    block: int = BLOCK  # orders per worker task; with the seed, it decides the data set


@dataclass(slots=True)
class Order:
    """One generated order: everything the rows of its tables are formatted from (times in epoch seconds)."""

    id: int
    merchant: int  # index
    listing_id: int
    template: tuple
    consumer: int  # index
    status: int
    max_fen: int
    amount_fen: int
    lines: list  # (name, quantity, unit, unit_price, amount_fen)
    created: int
    confirmed: int | None = None
    completed: int | None = None
    due: int | None = None
    closed: int | None = None
    close_reason: str = ""
    paid: int | None = None
    failures: int = 0  # declined attempts
    attempt_times: tuple = ()
    next_attempt: int | None = None
    overdue_since: int | None = None
    guaranteed: int | None = None
    refund_fen: int = 0
    refunded_at: int | None = None
    fee_fen: int = 0
    hold_fen: int = 0


def bill(template: tuple, rng: random.Random) -> tuple[int, list]:
    """The amount due (fen) and bill lines of one order under ``template``'s pricing rule."""
    rule = template[3]
    kind = rule["kind"]
    if kind == "per_unit" and rule["unit"] == "hour":
        hours = rng.randint(1, 12)
        amount = min(hours * 100, 1000)
        return amount, [("充电时长", f"{hours}.0000", "hour", "1.0000", amount)]
    if kind == "express":
        kg = rng.randint(1, 10)
        freight = 1200 + (kg - 1) * 200
        lines = [("运费", f"{kg}.0000", "kg", "0.0000", freight)]
        if "packaging_fee" in rule:
            lines.append(("包装费", "1.0000", "件", "3.0000", 300))
        return sum(line[4] for line in lines), lines
    if kind == "per_unit":
        return 3500, [("游泳单次", "1.0000", "visit", "35.0000", 3500)]
    if kind == "tiered":
        minutes = rng.randint(20, 180)
        billable = minutes - 10
        amount = min(billable, 60) * 50 + max(billable - 60, 0) * 30
        return amount, [(f"健身 {minutes} 分钟（免费 10 分钟）", f"{billable}.0000", "minute", "0.0000", amount)]
    price = int(rule["price"].replace(".", ""))
    return price, [(template[0], "1.0000", "件", f"{rule['price']}00", price)]


_forked: Generator | None = None  # the generator a forked worker process loads blocks for


def _load_block(b: int) -> tuple[int, dict[str, int], dict[int, int], dict[int, int]]:
    assert _forked is not None
    return _forked.load_block(b)


class Generator:
    """Generates and COPYs the data set; ``counts`` holds the rows written per table, for the checks."""

    def __init__(self, shape: Shape, now: datetime) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.now = int(now.timestamp())
        self.ts = Clock()
        self.counts: dict[str, int] = {}
        self.exposure = [0] * shape.consumers  # fen held by each consumer's open orders
        self.fee_bp = [FEE_BP[i % len(FEE_BP)] for i in range(shape.merchants)]
        # Listing j belongs to merchant j % M: merchant i's k-th listing is listing0 + i + M·k.
        self.listing_count = [shape.listings // shape.merchants + (1 if i < shape.listings % shape.merchants else 0)
                              for i in range(shape.merchants)]  # fmt: skip
        self.pause_reason: dict[int, str] = {}  # consumer index → reason (first overdue order)
        from bnpl.overdue import OVERDUE_PAUSE_PREFIX

        self.pause_prefix = OVERDUE_PAUSE_PREFIX

    def copy(self, model: Any, attnames: list[str], lines: Iterator[str]) -> None:
        n = copy_text(model, attnames, lines)
        table = model._meta.db_table
        self.counts[table] = self.counts.get(table, 0) + n

    # ---------------------------------------------------------------------------------------------------- parties

    def reserve_parties(self) -> None:
        """Ids of every party, and what the orders and profiles need to know of them (fees, listings, scores)."""
        from django.contrib.auth import get_user_model

        from bnpl.models import LedgerAccount
        from consumers.limits import initial_limit_for_score
        from consumers.models import Consumer
        from merchants.models import Listing, Merchant

        s = self.shape
        self.user0 = reserve_id_block(get_user_model(), s.merchants + s.consumers)
        self.merchant0 = reserve_id_block(Merchant, s.merchants)
        self.listing0 = reserve_id_block(Listing, s.listings)
        self.consumer0 = reserve_id_block(Consumer, s.consumers)
        # Ledger accounts: a payable per merchant, a receivable per consumer (ids known, for the entries).
        self.payable0 = reserve_id_block(LedgerAccount, s.merchants)
        self.receivable0 = reserve_id_block(LedgerAccount, s.consumers)
        rng = random.Random(f"{s.seed}:scores")
        self.score = [max(350, min(950, int(rng.gauss(650, 55)))) for _ in range(s.consumers)]
        self.limit_fen = [int(initial_limit_for_score(score) * 100) for score in self.score]

    def parties(self) -> None:
        """COPY the parties whose ids :meth:`reserve_parties` reserved (in a worker, beside the first orders)."""
        from django.contrib.auth import get_user_model
        from stdnum.cn import uscc

        from bnpl.models import LedgerAccount, SandboxFundingSource
        from consumers.models import Consumer
        from merchants.models import Listing, Merchant, MerchantMember

        s, rng, ts = self.shape, self.rng, self.ts
        user = get_user_model()
        started_at = self.now - s.days * DAY - 30 * DAY
        self.copy(
            user,
            ["id", "username", "password", "is_active", "date_joined"],
            (
                f"{self.user0 + i}\tgen-{'m' if i < s.merchants else 'c'}{i}\t!\tt\t{ts(started_at)}"
                for i in range(s.merchants + s.consumers)
            ),
        )

        def merchants() -> Iterator[str]:
            for i in range(s.merchants):
                body = f"91330106MA{i:07d}"
                code = body + uscc.calc_check_digit(body)
                scenario = SCENARIOS[i % 4]
                bp = self.fee_bp[i]
                yield (
                    f"{self.merchant0 + i}\t生成商户{i}有限公司\t生成商户{i}\t{code}\t张三\t137{i:08d}\t"
                    f"{CITIES[i % len(CITIES)]}\t{{{scenario}}}\t招商银行\t生成商户{i}有限公司\t6225880{i:09d}\t"
                    f"0.{bp:04d}\tapproved\t{ts(started_at)}\t{ts(started_at + DAY)}\t{ts(started_at)}"
                )

        self.copy(
            Merchant,
            [
                "id",
                "legal_name",
                "display_name",
                "uscc",
                "contact_name",
                "contact_phone",
                "city",
                "categories",
                "settlement_bank_name",
                "settlement_account_name",
                "settlement_account_number",
                "fee_rate",
                "status",
                "submitted_at",
                "approved_at",
                "created_at",
            ],
            merchants(),
        )
        self.copy(
            MerchantMember,
            ["merchant_id", "user_id", "role"],
            (f"{self.merchant0 + i}\t{self.user0 + i}\towner" for i in range(s.merchants)),
        )

        def listings() -> Iterator[str]:
            for j in range(s.listings):
                i, k = j % s.merchants, j // s.merchants
                title, ceiling, mode, rule, min_score = TEMPLATES[SCENARIOS[i % 4]][k % 2]
                yield (
                    f"{self.listing0 + j}\t{self.merchant0 + i}\t{title} · {k + 1}号\t{SCENARIOS[i % 4]}\t{mode}\t"
                    f"{money(ceiling)}\t{min_score}\t{json.dumps(rule, ensure_ascii=False)}\tactive"
                )

        self.copy(
            Listing,
            ["id", "merchant_id", "title", "scenario", "confirm_mode", "max_amount", "min_score", "pricing_rule",
             "status"],
            listings(),
        )  # fmt: skip
        self.copy(
            Consumer,
            ["id", "user_id", "phone", "phone_verified", "city", "created_at"],
            (
                f"{self.consumer0 + i}\t{self.user0 + s.merchants + i}\t139{i:08d}\tt\t{CITIES[i % len(CITIES)]}\t"
                f"{ts(started_at + rng.randrange(s.days * DAY))}"
                for i in range(s.consumers)
            ),
        )
        self.copy(
            SandboxFundingSource,
            ["consumer_id", "token", "label", "balance_amount", "frozen", "is_default"],
            (
                f"{self.consumer0 + i}\tsfs_{s.seed % 65536:04x}{i:020x}\t招商银行储蓄卡({i % 10000:04d})\t"
                f"{'0.00' if i % 100 < 3 else '5000.00'}\t{'t' if i % 100 in (50, 51) else 'f'}\tt"
                for i in range(s.consumers)
            ),
        )
        self.copy(
            LedgerAccount,
            ["id", "code", "kind", "merchant_id"],
            (
                f"{self.payable0 + i}\tmerchant_payable:m:{self.merchant0 + i}\tmerchant_payable\t{self.merchant0 + i}"
                for i in range(s.merchants)
            ),
        )
        self.copy(
            LedgerAccount,
            ["id", "code", "kind", "consumer_id"],
            (
                f"{self.receivable0 + i}\tconsumer_receivable:c:{self.consumer0 + i}\tconsumer_receivable\t"
                f"{self.consumer0 + i}"
                for i in range(s.consumers)
            ),
        )

    def platform_accounts(self) -> None:
        from bnpl.ledger import ledger_account_for
        from bnpl.models.ledger import AccountKind

        self.clearing = ledger_account_for(AccountKind.PAYMENT_CLEARING).pk
        self.fee_revenue = ledger_account_for(AccountKind.PLATFORM_FEE_REVENUE).pk
        self.advances = ledger_account_for(AccountKind.GUARANTEE_ADVANCES).pk
        self.bad_debt = ledger_account_for(AccountKind.BAD_DEBT).pk

    def profiles(self) -> None:
        from consumers.models import CreditProfile

        def rows() -> Iterator[str]:
            for i in range(self.shape.consumers):
                held = self.exposure[i]
                limit = max(self.limit_fen[i], -(-held // 1000) * 1000)  # whole ¥10 at least what is held
                reason = self.pause_reason.get(i, "")
                yield (
                    f"{self.consumer0 + i}\t{self.score[i]}\t{money(limit)}\t{money(held)}\t"
                    f"{'t' if reason else 'f'}\t{reason}"
                )

        self.copy(
            CreditProfile,
            ["consumer_id", "score", "credit_limit_amount", "open_exposure_amount", "is_paused", "paused_reason"],
            rows(),
        )

    # ----------------------------------------------------------------------------------------------------- orders

    def order(self, oid: int, due_now: bool, rng: random.Random) -> Order:
        s, now = self.shape, self.now
        merchant = 0 if rng.random() < 0.02 else rng.randrange(s.merchants)  # merchant #0 is a big one
        k = rng.randrange(self.listing_count[merchant])
        template = TEMPLATES[SCENARIOS[merchant % 4]][k % 2]
        listing_id = self.listing0 + merchant + s.merchants * k
        if due_now:
            status = DUE_NOW
        else:
            r = rng.random()
            status = next(code for share, code in MIX if r < share)
            if status == WRITTEN_OFF and s.days < 120:
                status = OVERDUE
        amount, lines = bill(template, rng)
        o = Order(oid, merchant, listing_id, template, rng.randrange(s.consumers), status, template[1], amount,
                  lines, 0)  # fmt: skip
        usage = rng.randint(600, 8 * HOUR)
        if status == DUE_NOW:
            o.due = now - rng.randint(60, 6 * HOUR)
        elif status == COMPLETED:
            o.due = now + rng.randint(HOUR, 23 * HOUR)
        elif status == COLLECTING:
            o.due = now - rng.randint(HOUR, GRACE - HOUR)
        elif status == OVERDUE:
            o.due = now - rng.randint(GRACE + DAY, s.days * DAY)
        elif status == WRITTEN_OFF:
            o.due = now - rng.randint(100 * DAY, s.days * DAY)
        elif status == ACTIVE:
            o.created = now - rng.randint(60, DAY)
        else:
            o.due = now - rng.randint(2 * DAY, s.days * DAY)
        if o.due is not None:
            o.completed = min(o.due - HOUR, now - 60)
            o.created = o.completed - usage
        o.confirmed = o.created + (0 if template[2] == "agreement" else rng.randint(5, 120))
        if status == DECLINED:
            o.confirmed = o.completed = o.due = None
            o.closed, o.close_reason = o.created, "admission declined"
        elif status == EXPIRED:
            o.confirmed = o.completed = o.due = None
            o.closed, o.close_reason = o.created + 30 * 60, "not confirmed in time"
        elif status == CANCELLED:
            o.completed = o.due = None
            o.closed, o.close_reason = o.created + rng.randint(60, 2 * HOUR), "cancelled by the consumer"
        if status in (ACTIVE,):
            o.hold_fen = o.max_fen
        elif status in OWED:
            o.hold_fen = amount
        if status not in BILLED:
            o.amount_fen, o.lines = 0, []
        if status in CHARGED:
            o.failures = 1 if rng.random() < 0.08 else 0
            o.paid = o.due + (HOUR if o.failures else 0) + rng.randint(0, 600)
            o.fee_fen = (amount * self.fee_bp[merchant] + 5000) // 10000
            if status != PAID:
                o.refund_fen = amount if status == REFUNDED or amount < 2 else amount * 3 // 10
                o.refunded_at = min(o.paid + rng.randint(HOUR, 10 * DAY), now - 60)
                if o.refund_fen == amount:
                    o.status = REFUNDED
        elif status == COLLECTING:
            o.failures = 1
            o.next_attempt = now + rng.randint(12 * HOUR, DAY)  # after the measurement, see the docstring
        elif status in (OVERDUE, WRITTEN_OFF):
            dpd = (now - o.due) // DAY
            o.failures = min(5, 2 + dpd // 7)
            o.overdue_since = o.due + GRACE
            o.guaranteed = o.due + 2 * GRACE + rng.randint(0, HOUR)
            if status == OVERDUE:
                o.next_attempt = now + rng.randint(12 * HOUR, DAY)
            else:
                o.closed, o.close_reason = o.due + 95 * DAY, "written off after 90 days past due"
        if o.failures:
            offsets = (0, HOUR, 7 * HOUR, 31 * HOUR, 55 * HOUR)
            o.attempt_times = tuple(o.due + offsets[j] for j in range(o.failures))
        return o

    def orders(self, workers: int) -> None:
        """The parties, then every order with its rows in blocks of ``shape.block``, shared out to ``workers``.

        Python formats the rows and PostgreSQL parses them, each about one core's worth at one loader: with a
        loader per core both sides keep every core busy. Block ``b`` draws from its own random generator seeded
        with (seed, b) and takes its ids from ranges reserved here, so the data set does not depend on the number
        of workers or on which finishes first. Each block is one transaction; the exposure its open orders hold
        and its consumers' first overdue order come back here for the credit profiles.
        """
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from django.db import connections

        s = self.shape
        self.order0 = reserve_id_block(self.models["CreditOrder"], s.orders)
        self.transaction0 = reserve_id_block(self.models["LedgerTransaction"], s.orders * MAX_FACTS)
        blocks = [PARTIES, *range(-(-s.orders // s.block))]
        connections.close_all()  # the workers are forked: each opens its own connection
        global _forked
        _forked = self
        done = 0
        first_overdue: dict[int, int] = {}
        started = time.perf_counter()
        # A worker that dies (killed, out of memory) breaks the pool: the next result raises BrokenProcessPool
        # instead of waiting for ever. On any failure the blocks not started are cancelled.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            futures = [pool.submit(_load_block, b) for b in blocks]
            for future in as_completed(futures):
                n, counts, held, overdue = future.result()
                for table, rows in counts.items():
                    self.counts[table] = self.counts.get(table, 0) + rows
                if n == PARTIES:
                    log(f"    merchants, listings, consumers, cards, accounts: {time.perf_counter() - started:.1f} s")
                    continue
                for consumer, fen in held.items():
                    self.exposure[consumer] += fen
                for consumer, oid in overdue.items():
                    if oid < first_overdue.get(consumer, oid + 1):
                        first_overdue[consumer] = oid
                done += n
                if done % (10 * s.block) == 0 or done == s.orders:
                    rate = done / (time.perf_counter() - started)
                    log(f"    orders: {done:,}/{s.orders:,} ({rate:,.0f} orders/s with their rows)")
        finally:
            pool.shutdown(cancel_futures=True)
            _forked = None
        for consumer, oid in first_overdue.items():
            self.pause_reason[consumer] = f"{self.pause_prefix}{oid} (G{oid})"[:200]

    def load_block(self, b: int) -> tuple[int, dict[str, int], dict[int, int], dict[int, int]]:
        """Generate and COPY block ``b`` of the orders (or the parties) in one transaction, in a worker process.

        Returns the number of orders (``PARTIES`` for the parties), the rows written per table, the fen each
        consumer's open orders hold and each consumer's first overdue order (for the credit profiles, written
        after every block).
        """
        from django.db import transaction

        self.counts = {}
        if b == PARTIES:
            with transaction.atomic():
                self.parties()
            return PARTIES, self.counts, {}, {}
        s = self.shape
        rng = random.Random(f"{s.seed}:{b}")
        first, history = b * s.block, s.orders - s.due
        # The due-now orders come last: the newest ids, as on a live platform.
        block = [self.order(self.order0 + i, i >= history, rng) for i in range(first, min(first + s.block, s.orders))]
        with transaction.atomic():
            self.write_block(block, first_transaction=self.transaction0 + first * MAX_FACTS)
        held: dict[int, int] = {}
        overdue: dict[int, int] = {}
        for o in block:
            if o.hold_fen:
                held[o.consumer] = held.get(o.consumer, 0) + o.hold_fen
            if o.status == OVERDUE and o.consumer not in overdue:
                overdue[o.consumer] = o.id
        return len(block), self.counts, held, overdue

    def write_block(self, block: list[Order], *, first_transaction: int | None = None) -> None:
        m, ts = self.models, self.ts
        merchant0, consumer0 = self.merchant0, self.consumer0

        def orders() -> Iterator[str]:
            for o in block:
                t = o.template
                billed = o.status in BILLED
                dpd = (self.now - o.due) // DAY if o.status == OVERDUE else 0
                bucket = "" if not dpd else "M0" if dpd <= 30 else "M1" if dpd <= 60 else "M2" if dpd <= 90 else "M3+"
                attempts = o.failures + (1 if o.status in CHARGED else 0)
                collecting = o.due if o.status in (COLLECTING, OVERDUE, WRITTEN_OFF) else None
                yield "\t".join((
                    str(o.id), str(merchant0 + o.merchant), str(o.listing_id), str(consumer0 + o.consumer),
                    f"G{o.id}", t[0], SCENARIOS[o.merchant % 4], t[2], self.rule_json[t[0]], STATUS[o.status],
                    money(o.max_fen), money(o.amount_fen) if billed else "\\N", money(o.hold_fen),
                    ts(o.created + 30 * 60) if t[2] == "each_time" else "\\N", ts(o.confirmed), ts(o.completed),
                    ts(o.due), ts(o.closed), o.close_reason, str(attempts), str(o.failures), ts(o.next_attempt),
                    ts(collecting), ts(o.overdue_since), str(dpd), bucket, ts(o.guaranteed), ts(o.paid),
                    ts(o.paid if o.status in CHARGED else None), money(o.refund_fen), ts(o.created),
                    ts(o.refunded_at or o.paid or o.closed or o.completed or o.created),
                ))  # fmt: skip

        self.copy(m["CreditOrder"], ORDER_COLUMNS, orders())
        self.copy(
            m["BillLine"],
            ["order_id", "position", "name", "quantity", "unit", "unit_price", "amount", "is_discount"],
            (
                f"{o.id}\t{p}\t{name}\t{qty}\t{unit}\t{price}\t{money(fen)}\tf"
                for o in block
                for p, (name, qty, unit, price, fen) in enumerate(o.lines)
            ),
        )

        def attempts() -> Iterator[str]:
            token = self.token
            for o in block:
                amount = money(o.amount_fen)
                for j, at in enumerate(o.attempt_times):
                    yield (
                        f"{o.id}\t{j + 1}\tca:{o.id}:{j + 1}\t{'scheduled' if j == 0 else 'retry'}\t{amount}\t"
                        f"{token(o.consumer)}\tdeclined\tinsufficient_funds\t余额不足\t\t{ts(at)}\t{ts(at)}\t{ts(at)}"
                    )
                if o.status in CHARGED:
                    j = o.failures + 1
                    yield (
                        f"{o.id}\t{j}\tca:{o.id}:{j}\t{'scheduled' if j == 1 else 'retry'}\t{amount}\t"
                        f"{token(o.consumer)}\tsucceeded\t\t\tsch_{o.id}\t{ts(o.paid)}\t{ts(o.paid)}\t{ts(o.paid)}"
                    )

        self.copy(
            m["ChargeAttempt"],
            ["order_id", "sequence", "idempotency_key", "trigger", "amount", "funding_token", "status",
             "decline_code", "message", "gateway_reference", "requested_at", "last_sent_at", "finished_at"],
            attempts(),
        )  # fmt: skip
        self.copy(
            m["Refund"],
            ["order_id", "merchant_id", "actor_kind", "amount", "reason", "idempotency_key", "gateway_key",
             "charge_reference", "status", "gateway_reference", "requested_at", "last_sent_at", "finished_at"],
            (
                f"{o.id}\t{merchant0 + o.merchant}\tmerchant\t{money(o.refund_fen)}\t商品退货\trf-{o.id}\trfd_{o.id}\t"
                f"sch_{o.id}\tsucceeded\tsrf_{o.id}\t{ts(o.refunded_at)}\t{ts(o.refunded_at)}\t{ts(o.refunded_at)}"
                for o in block
                if o.refund_fen
            ),
        )  # fmt: skip
        self.postings(block, first_transaction)
        self.copy(
            m["PromiseRecord"],
            ["consumer_id", "merchant_id", "order_id", "outcome", "amount", "recorded_at"],
            (
                f"{consumer0 + o.consumer}\t{merchant0 + o.merchant}\t{o.id}\t{outcome}\t{money(amount)}\t{ts(at)}"
                for o in block
                for outcome, amount, at in (self.promise(o),)
                if outcome
            ),
        )

    @staticmethod
    def promise(o: Order) -> tuple[str, int, int | None]:
        if o.status in CHARGED:
            return "fulfilled", o.amount_fen, o.paid
        if o.status in (OVERDUE, WRITTEN_OFF):
            return "breached", o.amount_fen, o.overdue_since
        if o.status == CANCELLED:
            return "cancelled", 0, o.closed
        return "", 0, None

    def token(self, consumer: int) -> str:
        return f"sfs_{self.shape.seed % 65536:04x}{consumer:020x}"

    def postings(self, block: list[Order], first: int | None) -> None:
        """Ledger transactions and entries of a block: what bnpl/ledger.py's post_* helpers write, per fact.

        Transaction ids from ``first`` on (at most ``MAX_FACTS`` per order), else a block reserved here.
        """
        m, ts = self.models, self.ts
        facts: list[tuple[int, str, str, int, list[tuple[int, int]]]] = []  # (order, kind, key, at, entries)
        for o in block:
            if o.status not in BILLED:
                continue
            a = o.amount_fen
            receivable, payable = self.receivable0 + o.consumer, self.payable0 + o.merchant
            facts.append((o.id, "completion", f"completion:{o.id}", o.completed, [(receivable, a), (payable, -a)]))
            if o.status in CHARGED:
                key = f"ca:{o.id}:{o.failures + 1}"
                facts.append((o.id, "charge", f"charge:{key}", o.paid, [(self.clearing, a), (receivable, -a)]))
                if o.fee_fen:
                    facts.append((o.id, "fee", f"fee:{o.id}", o.paid, [(payable, o.fee_fen),
                                                                        (self.fee_revenue, -o.fee_fen)]))  # fmt: skip
                if o.refund_fen:
                    facts.append((o.id, "refund", f"refund:rfd_{o.id}", o.refunded_at,
                                  [(payable, o.refund_fen), (self.clearing, -o.refund_fen)]))  # fmt: skip
            if o.guaranteed:
                facts.append((o.id, "guarantee", f"guarantee:{o.id}", o.guaranteed,
                              [(self.clearing, a), (self.advances, -a)]))  # fmt: skip
            if o.status == WRITTEN_OFF:
                facts.append((o.id, "write_off", f"write_off:{o.id}", o.closed, [(self.bad_debt, a),
                                                                                  (receivable, -a)]))  # fmt: skip
        if first is None:
            first = reserve_id_block(m["LedgerTransaction"], len(facts))
        elif len(facts) > MAX_FACTS * len(block):
            raise RuntimeError(f"{len(facts)} ledger transactions for {len(block)} orders: past the reserved range")
        self.copy(
            m["LedgerTransaction"],
            ["id", "kind", "order_id", "idempotency_key", "description", "created_at"],
            (
                f"{first + n}\t{kind}\t{oid}\t{key}\torder {oid} {kind}\t{ts(at)}"
                for n, (oid, kind, key, at, _entries) in enumerate(facts)
            ),
        )
        self.copy(
            m["LedgerEntry"],
            ["transaction_id", "account_id", "amount", "created_at"],
            (
                f"{first + n}\t{account}\t{money(amount)}\t{stamp}"
                for n, (_oid, _kind, _key, at, entries) in enumerate(facts)
                for stamp in (ts(at),)
                for account, amount in entries
            ),
        )

    def prepare(self) -> None:
        from bnpl.models import (
            BillLine,
            ChargeAttempt,
            CreditOrder,
            LedgerEntry,
            LedgerTransaction,
            Refund,
        )
        from consumers.models import PromiseRecord

        self.models = {
            model.__name__: model
            for model in (BillLine, ChargeAttempt, CreditOrder, LedgerEntry, LedgerTransaction, Refund, PromiseRecord)
        }
        self.rule_json = {
            t[0]: json.dumps(t[3], ensure_ascii=False) for templates in TEMPLATES.values() for t in templates
        }
        self.platform_accounts()

    def run(self, workers: int) -> None:
        from django.db import transaction

        self.prepare()
        self.reserve_parties()
        self.orders(workers)
        with transaction.atomic():
            self.profiles()

    def attach(self) -> None:
        """Find the parties an earlier run generated (contiguous id blocks), instead of generating them."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT min(m.id), min(a.id) FROM merchants_merchant m "
                "JOIN bnpl_ledgeraccount a ON a.merchant_id = m.id WHERE m.legal_name LIKE '生成商户%%'"
            )
            self.merchant0, self.payable0 = cursor.fetchone()
            cursor.execute("SELECT min(id) FROM merchants_listing WHERE merchant_id = %s", [self.merchant0])
            self.listing0 = cursor.fetchone()[0]
            cursor.execute(
                "SELECT min(c.id), min(a.id) FROM consumers_consumer c JOIN auth_user u ON u.id = c.user_id "
                "JOIN bnpl_ledgeraccount a ON a.consumer_id = c.id WHERE u.username LIKE 'gen-c%%'"
            )
            self.consumer0, self.receivable0 = cursor.fetchone()

    def top_up(self, n: int) -> None:
        """``n`` more orders due now, as the generated ones, with the triggers and constraints all in place."""
        from django.db import connection

        self.prepare()
        self.attach()
        first = reserve_id_block(self.models["CreditOrder"], n)
        block = [self.order(first + j, True, self.rng) for j in range(n)]
        self.write_block(block)
        held: dict[int, int] = {}
        for o in block:
            held[self.consumer0 + o.consumer] = held.get(self.consumer0 + o.consumer, 0) + o.hold_fen
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE consumers_creditprofile p SET open_exposure_amount = open_exposure_amount + h.fen / 100.0 "
                "FROM unnest(%s::bigint[], %s::bigint[]) AS h(consumer_id, fen) WHERE p.consumer_id = h.consumer_id",
                [list(held), list(held.values())],
            )


ORDER_COLUMNS = [
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
    "expires_at",
    "confirmed_at",
    "completed_at",
    "due_at",
    "closed_at",
    "close_reason",
    "charge_attempt_count",
    "charge_failure_count",
    "next_attempt_at",
    "collecting_since",
    "overdue_since",
    "dpd",
    "dpd_bucket",
    "guaranteed_at",
    "paid_at",
    "charged_at",
    "refunded_amount",
    "created_at",
    "updated_at",
]


# --------------------------------------------------------------------------------------------------------------
# checks


CHECKS = {
    "credit profiles whose exposure differs from what their open orders hold": """
        SELECT count(*) FROM consumers_creditprofile p
        LEFT JOIN (SELECT consumer_id, sum(hold_amount) AS held FROM bnpl_creditorder
                   WHERE hold_amount > 0 GROUP BY consumer_id) h ON h.consumer_id = p.consumer_id
        WHERE p.open_exposure_amount <> coalesce(h.held, 0)""",
    "receivable balance minus amounts still owed (completed, collecting, overdue)": """
        SELECT (SELECT coalesce(sum(e.amount), 0) FROM bnpl_ledgerentry e
                JOIN bnpl_ledgeraccount a ON a.id = e.account_id WHERE a.kind = 'consumer_receivable')
             - (SELECT coalesce(sum(amount_due), 0) FROM bnpl_creditorder
                WHERE status IN ('completed', 'collecting', 'overdue'))""",
    # At most one is the unique index charge_attempt_one_success_per_order (rebuilt, so checked, by the load).
    "orders whose charged_at is not the time of their succeeded attempt": """
        SELECT count(*) FROM bnpl_creditorder o
        LEFT JOIN bnpl_chargeattempt a ON a.order_id = o.id AND a.status = 'succeeded'
        WHERE o.charged_at IS DISTINCT FROM a.finished_at""",
    "charged orders without a succeeded attempt": """
        SELECT count(*) FROM bnpl_creditorder o
        WHERE o.status IN ('paid', 'partially_refunded', 'refunded')
          AND NOT EXISTS (SELECT 1 FROM bnpl_chargeattempt a WHERE a.order_id = o.id AND a.status = 'succeeded')""",
    "foreign keys or check constraints not validated": """
        SELECT count(*) FROM pg_constraint WHERE NOT convalidated AND contype IN ('f', 'c')""",
}


def check(counts: dict[str, int]) -> list[str]:
    """Problems found in the loaded data (empty when consistent)."""
    from django.db import connection

    from bnpl.ledger import ledger_check

    problems = []
    with connection.cursor() as cursor:
        for table, expected in sorted(counts.items()):
            cursor.execute(f"SELECT count(*) FROM {table}")
            found = cursor.fetchone()[0]
            if found < expected:  # the platform accounts and the like come on top
                problems.append(f"{table}: {found} rows, {expected} generated")
        for label, sql in CHECKS.items():
            started = time.perf_counter()
            cursor.execute(sql)
            value = cursor.fetchone()[0]
            log(f"    {label}: {value} ({time.perf_counter() - started:.1f} s)")
            if value:
                problems.append(f"{label}: {value}")
    started = time.perf_counter()
    ledger = ledger_check()
    log(f"    ledger_check(): {len(ledger)} problems ({time.perf_counter() - started:.1f} s)")
    started = time.perf_counter()
    dashboard = dashboard_differences()
    log(f"    dashboard roll-up days differing from the orders (biggest merchant): {dashboard} "
        f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    if dashboard:
        problems.append(f"dashboard roll-up: {dashboard} days differ from the orders")
    return problems + ledger[:10]


def dashboard_differences() -> int:
    """Days of the last 30 where the biggest merchant's roll-up differs from its orders (the roll-up's definition)."""
    import datetime as dt

    from django.utils import timezone

    from bnpl.merchant_portal.selectors import merchant_day_figures, merchant_day_figures_scan
    from merchants.models import Merchant

    merchant = Merchant.objects.order_by("pk").first()  # merchant #0 holds 2 % of the orders
    first_day = timezone.localdate() - dt.timedelta(days=29)
    rolled = merchant_day_figures(merchant=merchant, first_day=first_day)
    scanned = merchant_day_figures_scan(merchant=merchant, first_day=first_day)
    return sum(1 for day in rolled.keys() | scanned.keys() if rolled.get(day) != scanned.get(day))


# --------------------------------------------------------------------------------------------------------------


def generate(shape: Shape, workers: int) -> dict[str, Any]:
    """Load the data set into the current database (migrated, empty) with ``workers`` loaders; returns the figures.

    The steps commit as they go (the orders a block per transaction, on ``workers`` connections): a load that
    fails leaves the database incomplete, which the error says; the next run drops it and starts again.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from bnpl.merchant_portal.day_stats import day_stats_rebuild
    from bnpl.settlement import queue_unsettled_entries

    generator = Generator(shape, timezone.now())
    started = time.perf_counter()
    with transaction.atomic():
        aside = set_aside(LOADED_TABLES)
    log(f"[1/3] load ({aside.describe()} set aside; {workers} loaders)")
    generator.run(workers)

    def fill_settlement_queue() -> None:  # what the disabled trigger would have queued: every payable entry
        queued = queue_unsettled_entries()
        log(f"    settlement queue: {queued:,} unsettled payable entries ({time.perf_counter() - started_fill:.1f} s)")

    def fill_day_stats() -> None:  # the dashboard's roll-up, which the disabled order triggers would have kept
        days = day_stats_rebuild()
        log(f"    merchant day figures: {days:,} (merchant, day) rows ({time.perf_counter() - started_fill:.1f} s)")

    loaded = time.perf_counter() - started
    log(f"    rows copied in {loaded:.1f} s; rebuilding indexes and constraints, filling the queue and roll-up beside")
    started_fill = time.perf_counter()
    spent = restore(
        aside,
        workers=workers,
        fills=[(("bnpl_unsettledentry",), fill_settlement_queue), ((), fill_day_stats)],
        log=lambda message: None,
    )
    built = time.perf_counter() - started - loaded
    log(f"    indexes and constraints rebuilt (each foreign key validated) in {built:.1f} s; the slowest:")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1])[:6]:
        log(f"      {seconds:6.1f} s  {name}")
    with connection.cursor() as cursor:
        started_analyze = time.perf_counter()
        cursor.execute("ANALYZE")
        log(f"    ANALYZE: {time.perf_counter() - started_analyze:.1f} s")
    load_s = time.perf_counter() - started
    rows = sum(generator.counts.values())
    log(f"    {rows:,} rows in {load_s:.1f} s = {rows / load_s:,.0f} rows/s")
    for table, n in sorted(generator.counts.items(), key=lambda item: -item[1]):
        log(f"      {n:>12,}  {table}")
    log("[2/3] checks")
    started = time.perf_counter()
    problems = check(generator.counts)
    check_s = time.perf_counter() - started
    if problems:
        raise SystemExit("inconsistent data set:\n  " + "\n  ".join(problems))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    log(f"[3/3] consistent; checks took {check_s:.1f} s; database size {size}")
    return {
        "orders": shape.orders,
        "due": shape.due,
        "rows": rows,
        "load_s": round(load_s, 1),
        "check_s": round(check_s, 1),
        "rows_per_s": round(rows / load_s),
        "size": size,
    }


def top_up_due(shape: Shape, n: int) -> None:
    """Add ``n`` orders due now to the current database, built earlier by this script with ``shape``'s parties.

    For ``bench/growth.py``, whose charge run uses the due set up: the same kind of due orders again (random
    generated consumers and merchants), in one ordinary transaction (every trigger and constraint on).
    """
    from django.db import transaction
    from django.utils import timezone

    with transaction.atomic():
        Generator(shape, timezone.now()).top_up(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--merchants", type=int, default=40_000)
    parser.add_argument("--listings", type=int, default=1_400_000)
    parser.add_argument("--consumers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000, help="all orders, the due-now ones included")
    parser.add_argument("--due", type=int, default=10_000, help="completed orders due now (default 10000)")
    parser.add_argument("--days", type=int, default=180, help="age of the oldest order (default 180)")
    parser.add_argument("--seed", type=int, default=20_261_126)
    parser.add_argument("--database", default="bnpl_gen", help="dropped and created (default bnpl_gen)")
    parser.add_argument("--block", type=int, default=BLOCK, help=f"orders per loader task (default {BLOCK})")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="loader processes and index builders, each index builder with 512 MB of maintenance_work_mem "
        "(default: the cores, at most 4)",
    )
    args = parser.parse_args()
    if (
        args.listings < args.merchants
        or args.orders < 1
        or not 0 <= args.due <= args.orders
        or args.days < 3
        or args.block < 1
    ):
        parser.error("need listings >= merchants, 0 <= due <= orders, orders >= 1, days >= 3, block >= 1")
    shape = Shape(
        args.merchants, args.listings, args.consumers, args.orders, args.due, args.days, args.seed, args.block
    )

    use_bench_database(args.database)
    import django

    django.setup()
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    log(f"database {args.database}: migrated in {time.perf_counter() - started:.1f} s; load {os.getloadavg()[0]:.2f}")
    try:
        result = generate(shape, max(1, args.workers))
    except BaseException:
        log(f"the load failed: database {args.database} is incomplete (indexes, constraints and triggers set aside);"
            " running this again drops and creates it")  # fmt: skip
        raise
    result["database"] = args.database
    result["load_avg"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
