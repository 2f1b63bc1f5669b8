"""The set-based half of the charge run: claiming a chunk of due orders and recording a chunk of outcomes.

Split from :mod:`bnpl.charging` (which owns the runs, the gateway calls and the
one-attempt path) because these functions work on hundreds of orders per statement:
one statement locks and marks a chunk, one inserts its attempts, a handful record its
outcomes. They follow the same rules as the one-attempt path — the same rows, the
same lock order — and fall back to it for anything unusual (docs/charging.md).
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.choices import PromiseOutcome
from consumers.models import Consumer, PromiseRecord
from consumers.services import credit_holds_release_many, promise_records_add_many
from merchants.models import Merchant, WebhookEndpoint
from merchants.services import PendingWebhookEvent, webhook_events_enqueue_many
from scoring.services import features_on_charge_attempt, features_on_promises_kept

from .bulk_sql import copy_tuples
from .choices import ActorKind, OrderStatus
from .gateway.base import ChargeOutcome, GatewayResult
from .incentives import incentives_on_promises_kept
from .ledger import ledger_account_code, ledger_account_for, post_completion
from .models import ChargeAttempt, CreditOrder, OrderEvent
from .models.charging import IN_FLIGHT_STATUSES, AttemptStatus, ChargeTrigger
from .models.ledger import AccountKind, TransactionKind
from .money import ZERO, to_money
from .sql_arrays import int_array, numeric_array, text_array, timestamp_array
from .webhooks import charge_payload, consumers_livemode, order_event_payload

S = OrderStatus
PAYABLE = (S.COMPLETED, S.COLLECTING, S.OVERDUE)
MESSAGE_MAX = 255

# Who an order event names, by what started the attempt.
ACTOR_KIND_BY_TRIGGER = {
    ChargeTrigger.PAY_NOW: ActorKind.CONSUMER,
    ChargeTrigger.COLLECT: ActorKind.MERCHANT,
}


# --------------------------------------------------------------------------- policy


def retry_delay(failures: int) -> timedelta:
    """How long after its ``failures``-th failed attempt an order is tried again.

    ``BNPL_CHARGE_RETRY_DELAYS`` for the first failures (default +1 h, +6 h, +24 h),
    then every ``BNPL_CHARGE_RETRY_EVERY`` (default daily).
    """
    delays: Sequence[timedelta] = settings.BNPL_CHARGE_RETRY_DELAYS
    if 1 <= failures <= len(delays):
        return delays[failures - 1]
    return settings.BNPL_CHARGE_RETRY_EVERY


def new_attempt_key(order_id: int, sequence: int) -> str:
    """A fresh idempotency key for attempt ``sequence`` of an order.

    The random part keeps keys unique across environments that share a provider
    account (a staging database restored from another one reuses order ids).
    """
    return f"ca_{order_id}_{sequence}_{secrets.token_hex(8)}"


def fee_for(amount_due: Decimal, fee_rate: Decimal) -> Decimal:
    return to_money(amount_due * fee_rate)


# --------------------------------------------------------------------------- attempts to send


@dataclass(frozen=True)
class Outgoing:
    """An attempt ready to send: what the gateway call needs, read inside the claim transaction."""

    attempt_id: int
    order_id: int
    key: str
    token: str
    amount: Decimal


def funding_tokens(consumer_ids: Iterable[int]) -> dict[int, str]:
    """The default funding source token of each consumer (absent: the consumer has none).

    One array parameter (the partial unique index ``sandbox_source_one_default``): a chunk's 200 ids as
    ``consumer_id__in`` cost more in Django's per-value preparation and a 200-placeholder statement than the read.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT consumer_id, token FROM bnpl_sandboxfundingsource WHERE consumer_id = ANY(%s::bigint[]) "
            "AND is_default",
            [int_array(sorted(set(consumer_ids)))],
        )
        return dict(cursor.fetchall())


def completion_posted(order_ids: Iterable[int]) -> set[int]:
    """The orders among ``order_ids`` whose completion is posted (one query, the keys as one array)."""
    keys = {f"completion:{pk}": pk for pk in order_ids}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT idempotency_key FROM bnpl_ledgertransaction WHERE idempotency_key = ANY(%s::text[])",
            [text_array(keys)],
        )
        return {keys[key] for (key,) in cursor.fetchall()}


# --------------------------------------------------------------------------- recording outcomes (a chunk)


@dataclass
class Tally:
    """Counts and amounts of recorded outcomes, added to a :class:`ChargeRun` once per chunk."""

    succeeded: int = 0
    declined: int = 0
    unknown: int = 0
    errors: int = 0
    succeeded_amount: Decimal = ZERO
    declined_amount: Decimal = ZERO
    unknown_amount: Decimal = ZERO

    def count(self, status: str, amount: Decimal) -> None:
        if status == AttemptStatus.SUCCEEDED:
            self.succeeded += 1
            self.succeeded_amount += amount
        elif status in (AttemptStatus.DECLINED, AttemptStatus.NOT_FOUND):
            self.declined += 1
            self.declined_amount += amount
        elif status == AttemptStatus.UNKNOWN:
            self.unknown += 1
            self.unknown_amount += amount

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Posting:
    kind: str
    key: str
    order_id: int
    description: str
    entries: list[tuple[int, Decimal]] = field(default_factory=list)


def _account_ids(consumer_ids: set[int], merchant_ids: set[int]) -> dict[str, int]:
    """Ids of the accounts a chunk posts to, by code, in one query; missing ones are created (rare)."""
    wanted: dict[str, dict[str, Any]] = {
        ledger_account_code(AccountKind.PAYMENT_CLEARING): {"kind": AccountKind.PAYMENT_CLEARING},
        ledger_account_code(AccountKind.PLATFORM_FEE_REVENUE): {"kind": AccountKind.PLATFORM_FEE_REVENUE},
    }
    for pk in consumer_ids:
        code = ledger_account_code(AccountKind.CONSUMER_RECEIVABLE, consumer_id=pk)
        wanted[code] = {"kind": AccountKind.CONSUMER_RECEIVABLE, "consumer": pk}
    for pk in merchant_ids:
        code = ledger_account_code(AccountKind.MERCHANT_PAYABLE, merchant_id=pk)
        wanted[code] = {"kind": AccountKind.MERCHANT_PAYABLE, "merchant": pk}
    with connection.cursor() as cursor:
        cursor.execute("SELECT code, id FROM bnpl_ledgeraccount WHERE code = ANY(%s::text[])", [text_array(wanted)])
        ids = dict(cursor.fetchall())
    for code, spec in wanted.items():
        if code not in ids:
            ids[code] = ledger_account_for(spec.pop("kind"), **spec).pk
    return ids


def _post_batch(postings: list[_Posting]) -> None:
    """Write many balanced postings with two statements.

    The same rows ``post_charge`` and ``post_fee`` write one posting at a time; used
    only for facts recorded for the first time under the chunk's locks (an attempt
    moving out of pending/unknown), so no key can exist yet. Should one exist all the
    same, the unique key makes the whole chunk roll back and the per-attempt path (which
    replays postings idempotently) takes over. The database's triggers stamp the rows
    and check every transaction's balance at COMMIT, as for any other writer.
    """
    if not postings:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bnpl_ledgertransaction (kind, order_id, idempotency_key, description) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[]) "
            "RETURNING idempotency_key, id",
            [
                text_array(p.kind for p in postings),
                int_array(p.order_id for p in postings),
                text_array(p.key for p in postings),
                text_array(p.description for p in postings),
            ],
        )
        ids = dict(cursor.fetchall())
        txn_ids, account_ids, amounts = [], [], []
        for posting in postings:
            for account_id, amount in posting.entries:
                txn_ids.append(ids[posting.key])
                account_ids.append(account_id)
                amounts.append(amount)
        cursor.execute(
            "INSERT INTO bnpl_ledgerentry (transaction_id, account_id, amount) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[])",
            [int_array(txn_ids), int_array(account_ids), numeric_array(amounts)],
        )


@dataclass(slots=True)
class _OrderRow:
    """The columns of a locked order the bulk path reads and writes (no model instance: 200 per chunk)."""

    pk: int
    status: str
    consumer_id: int
    merchant_id: int
    amount_due: Decimal
    hold_amount: Decimal
    charge_failure_count: int
    collecting_since: datetime | None
    guaranteed_at: datetime | None
    paid_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(slots=True)
class _AttemptRow:
    pk: int
    status: str
    trigger: str
    actor_id: int | None
    amount: Decimal
    key: str
    decline_code: str = ""
    gateway_reference: str = ""
    message: str = ""
    finished_at: datetime | None = None


_LOCK_ORDERS = (
    "SELECT id, status, consumer_id, merchant_id, amount_due, hold_amount, charge_failure_count, collecting_since, "
    "guaranteed_at, paid_at, next_attempt_at FROM bnpl_creditorder WHERE id = ANY(%s::bigint[]) ORDER BY id "
    "FOR UPDATE"
)
_LOCK_ATTEMPTS = (
    "SELECT id, status, trigger, actor_id, amount, idempotency_key FROM bnpl_chargeattempt "
    "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
)
_UPDATE_ATTEMPTS = """
UPDATE bnpl_chargeattempt a SET status = v.status, decline_code = v.decline_code,
    gateway_reference = v.gateway_reference, message = v.message, finished_at = v.finished_at
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[])
    AS v(id, status, decline_code, gateway_reference, message, finished_at)
WHERE a.id = v.id
"""
_UPDATE_ORDERS = """
UPDATE bnpl_creditorder o SET status = v.status, hold_amount = v.hold_amount, paid_at = v.paid_at,
    -- This path marks an order paid only on its succeeded attempt: charged by the platform, at paid_at.
    charged_at = CASE WHEN v.status = 'paid' THEN v.paid_at ELSE o.charged_at END,
    charge_in_flight = false, next_attempt_at = v.next_attempt_at, charge_failure_count = v.charge_failure_count,
    collecting_since = v.collecting_since, updated_at = %s
FROM unnest(%s::bigint[], %s::text[], %s::numeric[], %s::timestamptz[], %s::timestamptz[], %s::int[],
            %s::timestamptz[]) AS v(id, status, hold_amount, paid_at, next_attempt_at, charge_failure_count,
                                    collecting_since)
WHERE o.id = v.id
"""


def _batchable(attempt: _AttemptRow, order: _OrderRow, result: GatewayResult) -> bool:
    """Whether an outcome takes the bulk path; the rest go through :func:`charge_attempt_record` one by one."""
    if result.outcome == ChargeOutcome.SUCCEEDED:
        # Overdue (recover, unpause) and guaranteed (repay the advance) orders need per-order work.
        return bool(result.reference) and order.status in (S.COMPLETED, S.COLLECTING) and order.guaranteed_at is None
    if result.outcome == ChargeOutcome.DECLINED:
        return attempt.trigger != ChargeTrigger.PAY_NOW and order.status in PAYABLE
    return result.outcome == ChargeOutcome.UNKNOWN


def record_batch(
    pairs: Sequence[tuple[Outgoing, GatewayResult]],
) -> tuple[Tally, list[tuple[Outgoing, GatewayResult]]]:
    """Record the common outcomes of a chunk in one transaction; returns the tally and the rest.

    Handled here, with a few set-based statements: successes of completed or
    collecting orders without a guarantee, scheduled declines, and unknowns. Everything
    else (an overdue order paid, a guaranteed one, a pay-now decline, ``not_found``, an
    order no longer payable) is returned for :func:`charge_attempt_record`, one
    transaction each. The rows written are the ones that function writes (a test holds
    the two paths to the same result); the side effects in other apps (credit hold,
    promise record, scoring features) go through their services, consumer by consumer.

    Lock order: orders (by id), attempts (by id), then per consumer (by id) the credit
    profile and the scoring features — the order every other writer uses.
    """
    tally = Tally()
    rest: list[tuple[Outgoing, GatewayResult]] = []
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_ORDERS, [int_array(sorted({item.order_id for item, _r in pairs}))])
        orders = {row[0]: _OrderRow(*row) for row in cursor.fetchall()}
        cursor.execute(_LOCK_ATTEMPTS, [int_array(sorted(item.attempt_id for item, _r in pairs))])
        attempts = {row[0]: _AttemptRow(*row) for row in cursor.fetchall()}
        successes: list[tuple[_AttemptRow, _OrderRow, GatewayResult]] = []
        failures: list[tuple[_AttemptRow, _OrderRow, GatewayResult]] = []
        unknowns: list[_AttemptRow] = []
        for item, result in pairs:
            attempt, order = attempts[item.attempt_id], orders[item.order_id]
            if attempt.status not in IN_FLIGHT_STATUSES:
                continue  # recorded already, by another worker
            if not _batchable(attempt, order, result):
                rest.append((item, result))
            elif result.outcome == ChargeOutcome.SUCCEEDED:
                successes.append((attempt, order, result))
            elif result.outcome == ChargeOutcome.DECLINED:
                failures.append((attempt, order, result))
            elif attempt.status == AttemptStatus.PENDING:
                attempt.message = result.message[:MESSAGE_MAX]
                unknowns.append(attempt)
            else:
                tally.count(AttemptStatus.UNKNOWN, attempt.amount)  # asked again, still unknown

        events: list[_Event] = []
        postings: list[_Posting] = []
        # Per consumer: hold to release, orders paid (promise records), failed charges (scoring).
        releases: dict[int, Decimal] = defaultdict(lambda: ZERO)
        paid_by_consumer: dict[int, list[_OrderRow]] = defaultdict(list)
        failed_consumers: dict[int, int] = defaultdict(int)

        if successes:
            paid = [order for _a, order, _r in successes]
            fee_rates = dict(
                Merchant.objects.filter(pk__in={o.merchant_id for o in paid}).values_list("pk", "fee_rate")
            )
            posted = completion_posted(o.pk for o in paid)
            for order in paid:
                if order.pk not in posted and order.amount_due:
                    # An order completed before completions were posted: post it the ordinary way (rare).
                    post_completion(CreditOrder.objects.get(pk=order.pk))
            accounts = _account_ids({o.consumer_id for o in paid}, {o.merchant_id for o in paid})
            clearing = accounts[ledger_account_code(AccountKind.PAYMENT_CLEARING)]
            revenue = accounts[ledger_account_code(AccountKind.PLATFORM_FEE_REVENUE)]
            for attempt, order, result in successes:
                amount = attempt.amount
                receivable = accounts[
                    ledger_account_code(AccountKind.CONSUMER_RECEIVABLE, consumer_id=order.consumer_id)
                ]
                postings.append(
                    _Posting(
                        TransactionKind.CHARGE,
                        f"charge:{attempt.key}",
                        order.pk,
                        f"charge of order {order.pk}",
                        [(clearing, amount), (receivable, -amount)],
                    )
                )
                fee = fee_for(order.amount_due, fee_rates[order.merchant_id])
                if fee > ZERO:
                    payable = accounts[ledger_account_code(AccountKind.MERCHANT_PAYABLE, merchant_id=order.merchant_id)]
                    postings.append(
                        _Posting(
                            TransactionKind.FEE,
                            f"fee:{order.pk}",
                            order.pk,
                            f"fee on order {order.pk}",
                            [(payable, fee), (revenue, -fee)],
                        )
                    )
                attempt.status = AttemptStatus.SUCCEEDED
                attempt.gateway_reference = (result.reference or "")[:64]
                attempt.message = result.message[:MESSAGE_MAX]
                attempt.finished_at = now
                events.append(
                    _Event(
                        order_id=order.pk,
                        actor_id=attempt.actor_id,
                        actor_kind=ACTOR_KIND_BY_TRIGGER.get(attempt.trigger, ActorKind.SYSTEM),
                        from_status=order.status,
                        to_status=S.PAID,
                        reason=_("Charged"),
                        data={"attempt": attempt.key, "amount": str(amount), "reference": result.reference},
                    )
                )
                releases[order.consumer_id] += order.hold_amount
                paid_by_consumer[order.consumer_id].append(order)
                order.status, order.hold_amount, order.paid_at, order.next_attempt_at = S.PAID, ZERO, now, None
                tally.count(AttemptStatus.SUCCEEDED, amount)

        for attempt, order, result in failures:
            attempt.status = AttemptStatus.DECLINED
            attempt.decline_code = (result.decline_code or "declined")[:32]
            attempt.gateway_reference = (result.reference or "")[:64]
            attempt.message = result.message[:MESSAGE_MAX]
            attempt.finished_at = now
            order.charge_failure_count += 1
            order.next_attempt_at = now + retry_delay(order.charge_failure_count)
            order.collecting_since = order.collecting_since or now
            if order.status == S.COMPLETED:
                events.append(
                    _Event(
                        order_id=order.pk,
                        actor_id=attempt.actor_id,
                        actor_kind=ACTOR_KIND_BY_TRIGGER.get(attempt.trigger, ActorKind.SYSTEM),
                        from_status=order.status,
                        to_status=S.COLLECTING,
                        reason=_("Charge declined: %(code)s") % {"code": attempt.decline_code},
                        data={
                            "attempt": attempt.key,
                            "decline_code": attempt.decline_code,
                            "next_attempt_at": order.next_attempt_at.isoformat(),
                        },
                    )
                )
                order.status = S.COLLECTING
            failed_consumers[order.consumer_id] += 1
            tally.count(AttemptStatus.DECLINED, attempt.amount)

        for attempt in unknowns:
            attempt.status = AttemptStatus.UNKNOWN
            tally.count(AttemptStatus.UNKNOWN, attempt.amount)

        changed = [a for a, _o, _r in successes + failures] + unknowns
        if changed:
            cursor.execute(
                _UPDATE_ATTEMPTS,
                [
                    int_array(a.pk for a in changed),
                    text_array(a.status for a in changed),
                    text_array(a.decline_code for a in changed),
                    text_array(a.gateway_reference for a in changed),
                    text_array(a.message for a in changed),
                    timestamp_array(a.finished_at for a in changed),
                ],
            )
        touched = [o for _a, o, _r in successes + failures]
        if touched:
            cursor.execute(
                _UPDATE_ORDERS,
                [
                    now,
                    int_array(o.pk for o in touched),
                    text_array(o.status for o in touched),
                    numeric_array(o.hold_amount for o in touched),
                    timestamp_array(o.paid_at for o in touched),
                    timestamp_array(o.next_attempt_at for o in touched),
                    int_array(o.charge_failure_count for o in touched),
                    timestamp_array(o.collecting_since for o in touched),
                ],
            )
        written = _insert_events(events, now)
        _enqueue_webhooks(
            written,
            charged={a.pk: o.pk for a, o, _r in successes + failures},
            merchant_of={o.pk: o.merchant_id for o in orders.values()},
            now=now,
        )
        _post_batch(postings)
        _consumer_side_effects(releases=releases, paid_by_consumer=paid_by_consumer, failed=failed_consumers, now=now)
    return tally, rest


@dataclass(slots=True)
class _Event:
    """An order event of the chunk, as plain values (written with COPY; an ``OrderEvent`` only if announced)."""

    order_id: int
    actor_id: int | None
    actor_kind: str
    from_status: str
    to_status: str
    reason: str
    data: dict[str, Any]


_EVENT_COLUMNS = ("order_id", "actor_id", "actor_kind", "from_status", "to_status", "reason", "data", "created_at")


def _insert_events(events: list[_Event], now: datetime) -> list[tuple[int, _Event]]:
    """Write the chunk's order events with one COPY (the rows ``OrderEvent.objects.create`` writes); returns
    them with their ids. Model instances and per-field preparation cost more than the insert at a chunk's size.
    """
    rows = [
        (e.order_id, e.actor_id, e.actor_kind, e.from_status, e.to_status, e.reason, json.dumps(e.data), now)
        for e in events
    ]
    return list(zip(copy_tuples(OrderEvent, _EVENT_COLUMNS, rows), events, strict=True))


def _enqueue_webhooks(
    written: list[tuple[int, _Event]], *, charged: dict[int, int], merchant_of: dict[int, int], now: datetime
) -> None:
    """Queue a chunk's webhooks as the one-attempt path does: ``charge.<outcome>`` then ``order.<status>``.

    ``charged`` maps the attempts that succeeded or were declined to their orders, ``merchant_of``
    the chunk's orders to their merchants (read under the chunk's locks). Only merchants with an
    active endpoint can receive anything; for the others nothing more is read (one query for the
    chunk). For the rest the payloads are built from one read of the orders and attempts,
    and the events and deliveries are written with ``webhook_events_enqueue_many`` (three
    statements): a few statements per chunk, not ten per order, while the chunk holds its locks.
    """
    if not written and not charged:
        return
    order_ids = {e.order_id for _pk, e in written} | set(charged.values())
    merchant_of = {pk: merchant_of[pk] for pk in order_ids}
    listening = set(
        WebhookEndpoint.objects.filter(merchant_id__in=set(merchant_of.values()), is_active=True).values_list(
            "merchant_id", flat=True
        )
    )
    wanted_ids = {pk for pk, merchant_id in merchant_of.items() if merchant_id in listening}
    if not wanted_ids:
        return
    orders = CreditOrder.objects.in_bulk(wanted_ids)
    livemode = consumers_livemode({order.consumer_id for order in orders.values()})
    attempt_of = {
        attempt.order_id: attempt
        for attempt in ChargeAttempt.objects.filter(
            pk__in=[pk for pk, order_id in charged.items() if order_id in wanted_ids]
        )
    }
    pending: list[PendingWebhookEvent] = []

    def add(order: CreditOrder, event_type: str, payload: dict[str, Any]) -> None:
        pending.append(
            PendingWebhookEvent(
                merchant_id=order.merchant_id,
                event_type=event_type,
                payload=payload,
                ordering_key=f"order:{order.pk}",
                livemode=livemode[order.consumer_id],
            )
        )

    for order_id in sorted(wanted_ids):
        if order_id in attempt_of:
            attempt = attempt_of[order_id]
            add(orders[order_id], f"charge.{attempt.status}", charge_payload(attempt, orders[order_id]))
    for pk, e in written:
        if e.order_id in wanted_ids:
            order = orders[e.order_id]
            event = OrderEvent(
                pk=pk,
                order_id=e.order_id,
                actor_id=e.actor_id,
                actor_kind=e.actor_kind,
                from_status=e.from_status,
                to_status=e.to_status,
                reason=e.reason,
                data=e.data,
                created_at=now,
            )
            add(order, f"order.{e.to_status}", order_event_payload(order, event))
    webhook_events_enqueue_many(pending)


def _consumer_side_effects(
    *,
    releases: dict[int, Decimal],
    paid_by_consumer: dict[int, list[_OrderRow]],
    failed: dict[int, int],
    now: datetime,
) -> None:
    """The chunk's effects in the consumers and scoring apps, a few statements for the whole chunk.

    Holds given back (one statement), promise records written (one), the kept promises
    counted into the scoring features and the scores re-evaluated
    (``features_on_promises_kept``: a handful of statements, plus one write per consumer
    whose score or limit moved). Declines are rare in a run and go one by one. Lock order:
    credit profiles by consumer id, then feature rows by consumer id.
    """
    credit_holds_release_many(amounts=releases)
    records = promise_records_add_many(
        records=[
            PromiseRecord(
                consumer_id=consumer_id,
                merchant_id=order.merchant_id,
                order_id=order.pk,
                outcome=PromiseOutcome.FULFILLED,
                amount=order.amount_due,
                recorded_at=now,
            )
            for consumer_id, orders in sorted(paid_by_consumer.items())
            for order in orders
        ]
    )
    features_on_promises_kept(actor=None, records=records)
    incentives_on_promises_kept(actor=None, records=records, now=now)
    if not failed and not paid_by_consumer:
        return
    # A success matters to scoring only when it clears earlier failures; most consumers have none.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT consumer_id FROM scoring_consumerfeatures WHERE consumer_id = ANY(%s) AND charge_failures > 0",
            [[pk for pk in paid_by_consumer if pk not in failed]],
        )
        clears = {pk for (pk,) in cursor.fetchall()}
    if not failed and not clears:
        return
    consumers = Consumer.objects.in_bulk(sorted(set(failed) | clears))
    for consumer_id, count in sorted(failed.items()):
        for _n in range(count):
            features_on_charge_attempt(actor=None, consumer=consumers[consumer_id], succeeded=False)
    for consumer_id in sorted(clears):
        features_on_charge_attempt(actor=None, consumer=consumers[consumer_id], succeeded=True)


# --------------------------------------------------------------------------- claiming


# What makes an order due for a first charge, and for a retry: the WHERE clauses of the claims and of the
# backlog count, written once. Each matches a partial index (``order_due_idx``, ``order_retry_due_idx``).
_DUE_FIRST = """status = 'completed' AND due_at <= %(now)s AND NOT charge_in_flight AND amount_due > 0
    AND NOT charge_paused  -- an open dispute pauses the charge (bnpl/disputes.py)"""
_DUE_RETRY = """status IN ('collecting', 'overdue') AND next_attempt_at <= %(now)s AND NOT charge_in_flight
    AND NOT charge_paused  -- an open dispute pauses the charge (bnpl/disputes.py)"""

_CLAIM = """
WITH due AS (
    SELECT id FROM bnpl_creditorder
    WHERE {where}
    ORDER BY {order_by} LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE bnpl_creditorder o SET charge_in_flight = true, charge_attempt_count = o.charge_attempt_count + 1,
    updated_at = %(now)s
FROM due WHERE o.id = due.id
RETURNING o.id, o.consumer_id, o.amount_due + o.late_fee_amount, o.charge_attempt_count, o.status
"""
_CLAIM_DUE = _CLAIM.format(where=_DUE_FIRST, order_by="due_at")
_CLAIM_RETRY = _CLAIM.format(where=_DUE_RETRY, order_by="next_attempt_at")
_INSERT_ATTEMPTS = """
INSERT INTO bnpl_chargeattempt (order_id, run_id, sequence, idempotency_key, trigger, amount, funding_token, status,
    decline_code, message, gateway_reference, send_count, requested_at, last_sent_at)
SELECT v.order_id, %s, v.sequence, v.key, v.trigger, v.amount, v.token, 'pending', '', '', '', 1, %s, %s
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::numeric[], %s::text[])
    AS v(order_id, sequence, key, trigger, amount, token)
RETURNING id, order_id
"""


_COUNT = """
SELECT (SELECT count(*) FROM (SELECT 1 FROM bnpl_creditorder WHERE {first}
            LIMIT %(limit)s) d)
     + (SELECT count(*) FROM (SELECT 1 FROM bnpl_creditorder WHERE {retry}
            LIMIT %(limit)s) r)
"""
_COUNT_DUE = _COUNT.format(first=_DUE_FIRST, retry=_DUE_RETRY)


def due_orders_count(*, now: datetime, limit: int) -> int:
    """How many orders :func:`claim_due` would find now, counted up to about ``limit`` (the same conditions).

    Bounded, on the claims' partial indexes, so asking costs the same over a backlog of millions: the charge run
    asks only to decide how many helper runs to start (``bnpl.tasks.charge_run``).
    """
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_DUE, {"now": now, "limit": limit})
        return min(cursor.fetchone()[0], limit)


def claim_due(*, run_id: int, limit: int, now: datetime) -> list[Outgoing]:
    """Lock up to ``limit`` due orders and write their pending attempts, in one transaction.

    Completed orders by due time (partial index ``order_due_idx``), then collecting and
    overdue ones by next attempt (``order_retry_due_idx``). Each claimed order is marked
    ``charge_in_flight`` in the same statement that locks it; the flag is in the WHERE
    clause, so a worker that reaches a row another worker has just claimed re-checks
    the committed row version (PostgreSQL re-evaluates the condition on the locked,
    updated row) and skips it: two workers never write two attempts for one order, and
    the partial unique constraint ``charge_attempt_one_in_flight_per_order`` would refuse
    it if they tried.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_DUE, {"now": now, "limit": limit})
        rows = cursor.fetchall()
        if len(rows) < limit:
            cursor.execute(_CLAIM_RETRY, {"now": now, "limit": limit - len(rows)})
            rows += cursor.fetchall()
        if not rows:
            return []
        tokens = funding_tokens(row[1] for row in rows)
        keys = [new_attempt_key(order_id, sequence) for order_id, _c, _a, sequence, _s in rows]
        triggers = [ChargeTrigger.SCHEDULED if row[4] == S.COMPLETED else ChargeTrigger.RETRY for row in rows]
        cursor.execute(
            _INSERT_ATTEMPTS,
            [
                run_id,
                now,
                now,
                int_array(row[0] for row in rows),
                int_array(row[3] for row in rows),
                text_array(keys),
                text_array(triggers),
                numeric_array(row[2] for row in rows),
                text_array(tokens.get(row[1], "") for row in rows),
            ],
        )
        attempt_of = {order_id: attempt_id for attempt_id, order_id in cursor.fetchall()}
    return [
        Outgoing(attempt_of[row[0]], row[0], key, tokens.get(row[1], ""), row[2])
        for row, key in zip(rows, keys, strict=True)
    ]


def claim_stalled(*, limit: int, now: datetime, older_than: timedelta, exclude: set[int]) -> list[Outgoing]:
    """Take pending attempts whose worker stopped before recording them, to send again with the same key.

    Index ``charge_attempt_pending_idx``. Each is stamped with a new ``last_sent_at``, so
    other workers leave it alone for ``older_than``; ``exclude`` holds the attempts this
    run has in hand. Sending a key twice is safe (the provider replays the first
    result); this only saves the provider's time.
    """
    with transaction.atomic():
        rows = list(
            ChargeAttempt.objects.select_for_update(skip_locked=True)
            .filter(status=AttemptStatus.PENDING, last_sent_at__lte=now - older_than)
            .exclude(pk__in=exclude)
            .order_by("last_sent_at")
            .values_list("id", "order_id", "idempotency_key", "funding_token", "amount")[:limit]
        )
        if rows:
            ChargeAttempt.objects.filter(pk__in=[row[0] for row in rows]).update(
                last_sent_at=now, send_count=F("send_count") + 1
            )
    return [Outgoing(*row) for row in rows]
