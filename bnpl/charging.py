"""The charge run (事后扣款): take each due credit order's money exactly once (docs/charging.md).

One chunk of the run goes through three steps:

1. **Claim** (one short transaction): due orders — completed with ``due_at`` ≤ now,
   collecting or overdue with ``next_attempt_at`` ≤ now — are locked with
   ``SELECT … FOR UPDATE SKIP LOCKED``, marked ``charge_in_flight`` and given a
   pending :class:`ChargeAttempt` each, with its fixed idempotency key. Claim and
   attempt commit together: after a crash there is either nothing, or a pending
   attempt that the next run sends again with the same key.
2. **Send** (no transaction): the gateway is called concurrently for the chunk from a
   thread pool, so gateway latency does not serialise the run.
3. **Record** (one transaction per chunk, falling back to one per attempt): each
   outcome, the order's transition and the ledger postings are written together.

Invariant 1 ("one successful charge per order") does not depend on this code being
right: the partial unique constraints on ``ChargeAttempt`` refuse a second success
and a second in-flight attempt, and the gateway moves money once per key.

An ``unknown`` outcome (timeout, lost response) leaves the attempt ``unknown`` and
the order in flight: no new attempt is made until :func:`reconcile_unknown_attempts`
has asked the gateway what happened under that key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from consumers.models import Consumer
from consumers.services import credit_hold_release
from merchants.models import Merchant
from scoring.models import ConsumerFeatures
from scoring.services import features_on_charge_attempt

from .charging_bulk import (
    ACTOR_KIND_BY_TRIGGER,
    MESSAGE_MAX,
    PAYABLE,
    Outgoing,
    Tally,
    claim_due,
    claim_stalled,
    completion_posted,
    fee_for,
    funding_tokens,
    new_attempt_key,
    record_batch,
    retry_delay,
)
from .choices import ActorKind, OrderStatus
from .exceptions import NotAllowed
from .gateway import get_gateway
from .gateway.base import ChargeOutcome, GatewayResult, PaymentGateway
from .ledger import post_charge, post_completion, post_fee
from .models import ChargeAttempt, ChargeRun, CreditOrder, OrderEvent
from .models.charging import (
    IN_FLIGHT_STATUSES,
    NO_FUNDING_SOURCE,
    NOT_FOUND_CODE,
    AttemptStatus,
    ChargeRunKind,
    ChargeRunStatus,
    ChargeTrigger,
)
from .money import ZERO
from .overdue import overdue_pause_lift
from .services import _lock_order, _move, _promise_on_paid, _refusal
from .thread_pools import shutdown_closing_connections
from .webhooks import charge_webhook

__all__ = [
    "Outgoing",
    "RecordResult",
    "Tally",
    "charge_attempt_record",
    "credit_order_charge_now",
    "credit_order_pay_now",
    "credit_order_retry_charge",
    "reconcile_unknown_attempts",
    "retry_delay",
    "run_charges",
]

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

logger = logging.getLogger(__name__)

S = OrderStatus


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"[:100]


def _charge_amount(order: CreditOrder) -> Decimal:
    assert order.amount_due is not None
    return order.amount_due + order.late_fee_amount


def _new_attempt(
    order: CreditOrder,
    *,
    trigger: str,
    token: str,
    now: datetime,
    run_id: int | None = None,
    actor: Actor = None,
) -> ChargeAttempt:
    """Write the next pending attempt of a locked order and mark the order in flight (caller saves the order)."""
    order.charge_attempt_count += 1
    order.charge_in_flight = True
    return ChargeAttempt.objects.create(
        order=order,
        run_id=run_id,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        sequence=order.charge_attempt_count,
        idempotency_key=new_attempt_key(order.pk, order.charge_attempt_count),
        trigger=trigger,
        amount=_charge_amount(order),
        funding_token=token,
        requested_at=now,
        last_sent_at=now,
    )


def _outgoing(attempt: ChargeAttempt) -> Outgoing:
    return Outgoing(attempt.pk, attempt.order_id, attempt.idempotency_key, attempt.funding_token, attempt.amount)


# --------------------------------------------------------------------------- calling the gateway


def _charge_one(gateway: PaymentGateway, item: Outgoing) -> tuple[GatewayResult, bool]:
    """Send one attempt; returns the result and whether the call itself failed (an error to count).

    A consumer without a funding source is declined here, without a call. Any
    exception from the call leaves the attempt's fate open, so it becomes ``unknown``
    and is reconciled, never assumed declined.
    """
    if not item.token:
        return GatewayResult(
            outcome=ChargeOutcome.DECLINED, decline_code=NO_FUNDING_SOURCE, message="no funding source"
        ), False
    try:
        return gateway.charge(item.key, item.token, item.amount), False
    except Exception as exc:  # the outcome is unknown whatever went wrong
        logger.exception("charge call for attempt %s failed", item.key)
        return GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=f"call failed: {exc!r}"[:MESSAGE_MAX]), True


def _charge_batch(gateway: PaymentGateway, items: Sequence[Outgoing]) -> list[tuple[GatewayResult, bool]]:
    """Send a chunk's attempts as one batch (``gateway.charges_in_batches``); results in the items' order.

    Attempts without a funding source are declined without a call, as in :func:`_charge_one` (no call at
    all when none has one). Should the batch call fail, each attempt is sent again alone, one after
    another, with its key: whatever the batch did is replayed, whatever it did not do is done, and an
    attempt whose own call fails becomes ``unknown``. A gateway that bounds its calls is not sent them
    again: one after another they could take a timeout each, past the run's budget, so they become
    ``unknown`` and reconciliation asks the provider about each key. The failed batch call counts as one
    error of the run (carried by its first attempt's result), as a failed call per charge does.
    """
    sent = [item for item in items if item.token]
    answers: dict[int, GatewayResult] = {}
    if sent:
        try:
            answers = dict(
                zip(
                    (item.attempt_id for item in sent),
                    gateway.charge_batch([(item.key, item.token, item.amount) for item in sent]),
                    strict=True,
                )
            )
        except Exception as exc:
            if gateway.call_timeout_s:
                logger.exception("batch charge call for %s attempts failed; they are unknown", len(sent))
                failed = GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=f"batch failed: {exc!r}"[:MESSAGE_MAX])
                results = [(failed, False) if item.token else _charge_one(gateway, item) for item in items]
            else:
                logger.exception("batch charge call for %s attempts failed; sending them one by one", len(sent))
                results = [_charge_one(gateway, item) for item in items]
            first = items.index(sent[0])
            results[first] = (results[first][0], True)
            return results
    return [(answers[item.attempt_id], False) if item.token else _charge_one(gateway, item) for item in items]


def _query_one(gateway: PaymentGateway, item: Outgoing) -> tuple[GatewayResult, bool]:
    try:
        return gateway.query(item.key), False
    except Exception as exc:
        logger.exception("query for attempt %s failed", item.key)
        return GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=f"query failed: {exc!r}"[:MESSAGE_MAX]), True


def _refuse_inside_transaction() -> None:
    """A gateway call never runs inside a database transaction (it may take seconds and cannot be rolled back).

    The same test as ``atomic(durable=True)``: a test case's own wrapping transaction does not count.
    """
    blocks = connection.atomic_blocks
    if blocks and not getattr(blocks[-1], "_from_testcase", False):
        raise RuntimeError("gateway calls must not run inside a database transaction")


class _Sender:
    """Runs a chunk's gateway calls on a thread pool, outside any transaction: one per charge, concurrently,
    or one batch call for the chunk when the gateway takes batches.

    Each pool thread keeps its own database connection (the in-process sandbox uses
    one); :meth:`close` has every thread close it before the pool goes away.
    """

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="charge") if self.threads > 1 else None

    def submit(
        self, call: Callable[[Outgoing], tuple[GatewayResult, bool]], items: Sequence[Outgoing]
    ) -> Callable[[], list[tuple[GatewayResult, bool]]]:
        """Start the calls; the returned function waits for them and gives the results in order."""
        _refuse_inside_transaction()
        if self.pool is None:
            results = [call(item) for item in items]
            return lambda: results
        futures = [self.pool.submit(call, item) for item in items]
        return lambda: [future.result() for future in futures]

    def submit_batch(
        self, call: Callable[[Sequence[Outgoing]], list[tuple[GatewayResult, bool]]], items: Sequence[Outgoing]
    ) -> Callable[[], list[tuple[GatewayResult, bool]]]:
        """Start one call for the whole chunk (on a pool thread, so it runs while earlier chunks are recorded)."""
        _refuse_inside_transaction()
        if self.pool is None:
            results = call(items)
            return lambda: results
        future = self.pool.submit(call, items)
        return future.result

    def close(self) -> None:
        if self.pool is not None:
            shutdown_closing_connections(self.pool, self.threads)


# --------------------------------------------------------------------------- recording outcomes (one attempt)


@dataclass
class RecordResult:
    """What recording one outcome did.

    ``recorded`` is False when nothing changed: the attempt was already final (another
    worker recorded it) or an unknown attempt stayed unknown. ``replacement`` is the
    new attempt started when reconciliation found the provider never saw the key.
    """

    attempt: ChargeAttempt
    recorded: bool
    replacement: Outgoing | None = None


def _ensure_completion_posted(order: CreditOrder) -> None:
    """Post the completion of an order completed before completions were posted (idempotent by key check).

    Checked by key rather than by replaying ``post_completion``: an order whose amount
    was lowered after completion has a completion at the original amount, and a replay
    at the new amount would be a conflicting posting.
    """
    if order.amount_due and order.amount_due > ZERO and not completion_posted([order.pk]):
        post_completion(order)


def _event_actor_kind(attempt: ChargeAttempt) -> str:
    return ACTOR_KIND_BY_TRIGGER.get(attempt.trigger, ActorKind.SYSTEM)


def _apply_success(order: CreditOrder, attempt: ChargeAttempt, result: GatewayResult, now: datetime) -> None:
    attempt.status = AttemptStatus.SUCCEEDED
    attempt.gateway_reference = (result.reference or attempt.gateway_reference or "unreported")[:64]
    attempt.message = result.message[:MESSAGE_MAX]
    attempt.finished_at = now
    attempt.save(update_fields=["status", "gateway_reference", "message", "finished_at"])
    order.charge_in_flight = False
    order.next_attempt_at = None
    order.charged_at = now  # the platform charged it (the dashboard's "charged"; bnpl/models/orders.py)
    _ensure_completion_posted(order)
    post_charge(order, attempt_key=attempt.idempotency_key, amount=attempt.amount)
    charge_webhook(attempt=attempt, order=order)
    if order.status not in PAYABLE:
        # Cannot happen through the services (paying elsewhere and writing off are refused while a charge is
        # in flight), but money moved, so it is recorded and staff are told rather than the outcome dropped.
        logger.error("order %s was %s when charge %s succeeded; refund it", order.pk, order.status, attempt.pk)
        order.save(update_fields=["charge_in_flight", "next_attempt_at", "charged_at", "updated_at"])
        OrderEvent.objects.create(
            order=order,
            actor_kind=ActorKind.SYSTEM,
            from_status=order.status,
            to_status=order.status,
            reason=_("Charged after the order was closed: refund the consumer"),
            data={"event": "charged_when_closed", "attempt": attempt.idempotency_key, "amount": str(attempt.amount)},
        )
        return
    fee_rate = Merchant.objects.values_list("fee_rate", flat=True).get(pk=order.merchant_id)
    fee = fee_for(order.amount_due or ZERO, fee_rate)
    if fee > ZERO:
        post_fee(order, fee_amount=fee)
    was_overdue = order.status == S.OVERDUE
    if order.hold_amount > ZERO:
        credit_hold_release(consumer=order.consumer, amount=order.hold_amount)  # type: ignore[arg-type]
    order.hold_amount = ZERO
    order.paid_at = now
    _move(
        order,
        to=S.PAID,
        actor=attempt.actor,
        actor_kind=_event_actor_kind(attempt),
        reason=_("Charged"),
        data={"attempt": attempt.idempotency_key, "amount": str(attempt.amount), "reference": result.reference},
        update_fields=["hold_amount", "paid_at", "charge_in_flight", "next_attempt_at", "charged_at"],
    )
    if was_overdue:
        overdue_pause_lift(actor=attempt.actor, order=order)
    _promise_on_paid(order, actor=None, now=now)
    _tell_scoring_charge(order, succeeded=True)


def _tell_scoring_charge(order: CreditOrder, *, succeeded: bool) -> None:
    """The funding source's health for scoring: a failure counts; a success clears earlier failures."""
    if succeeded and not ConsumerFeatures.objects.filter(pk=order.consumer_id, charge_failures__gt=0).exists():
        return
    features_on_charge_attempt(actor=None, consumer=order.consumer, succeeded=succeeded)  # type: ignore[arg-type]


def _is_due(order: CreditOrder, now: datetime) -> bool:
    if order.status in (S.COLLECTING, S.OVERDUE):
        return True
    return order.status == S.COMPLETED and order.due_at is not None and order.due_at <= now


def _apply_failure(
    order: CreditOrder,
    attempt: ChargeAttempt,
    result: GatewayResult,
    now: datetime,
    *,
    replace_not_found: bool,
) -> Outgoing | None:
    not_found = result.outcome == ChargeOutcome.NOT_FOUND
    attempt.status = AttemptStatus.NOT_FOUND if not_found else AttemptStatus.DECLINED
    attempt.decline_code = NOT_FOUND_CODE if not_found else (result.decline_code or "declined")[:32]
    attempt.gateway_reference = (result.reference or "")[:64]
    attempt.message = result.message[:MESSAGE_MAX]
    attempt.finished_at = now
    attempt.save(update_fields=["status", "decline_code", "gateway_reference", "message", "finished_at"])
    order.charge_in_flight = False
    fields = ["charge_in_flight"]
    if order.status not in PAYABLE:
        order.save(update_fields=[*fields, "updated_at"])
        return None
    if not_found:
        # The provider never saw the key: no money moved and it was not the consumer's failure, so the
        # schedule is not advanced. Reconciliation replaces the attempt at once when the order is due.
        if replace_not_found and _is_due(order, now):
            token = funding_tokens([order.consumer_id]).get(order.consumer_id, "")  # type: ignore[list-item]
            replacement = _new_attempt(
                order, trigger=ChargeTrigger.RECONCILE, token=token, now=now, actor=None, run_id=attempt.run_id
            )
            order.save(update_fields=[*fields, "charge_attempt_count", "updated_at"])
            return _outgoing(replacement)
        if order.status in (S.COLLECTING, S.OVERDUE):
            order.next_attempt_at = now
            fields.append("next_attempt_at")
        order.save(update_fields=[*fields, "updated_at"])
        return None
    if attempt.trigger == ChargeTrigger.PAY_NOW:
        # The consumer's own try, outside the schedule: the order keeps its state and its next scheduled attempt.
        order.save(update_fields=[*fields, "updated_at"])
        return None
    order.charge_failure_count += 1
    order.next_attempt_at = now + retry_delay(order.charge_failure_count)
    if order.collecting_since is None:
        order.collecting_since = now
    fields += ["charge_failure_count", "next_attempt_at", "collecting_since"]
    _tell_scoring_charge(order, succeeded=False)
    charge_webhook(attempt=attempt, order=order)
    if order.status == S.COMPLETED:
        _move(
            order,
            to=S.COLLECTING,
            actor=attempt.actor,
            actor_kind=_event_actor_kind(attempt),
            reason=_("Charge declined: %(code)s") % {"code": attempt.decline_code},
            data={
                "attempt": attempt.idempotency_key,
                "decline_code": attempt.decline_code,
                "next_attempt_at": order.next_attempt_at.isoformat(),
            },
            update_fields=fields,
        )
    else:
        order.save(update_fields=[*fields, "updated_at"])
    return None


def charge_attempt_record(*, attempt_id: int, result: GatewayResult, replace_not_found: bool = False) -> RecordResult:
    """Record the gateway's answer for one attempt, with the order's transition and ledger, in one transaction.

    - ``succeeded`` → attempt succeeded; order ``paid``, hold released, promise record
      fulfilled (recovered when it was breached, and the overdue pause lifted when no
      other order is overdue); ledger: completion if missing, ``post_charge``, ``post_fee``.
    - ``declined`` → attempt declined; the order goes to (or stays in) ``collecting`` with
      its next attempt per :func:`retry_delay`; a declined pay-now changes no schedule.
    - ``not_found`` (from reconciliation) → attempt ``not_found``; the order may be tried
      again at once (with ``replace_not_found``, the new attempt is written here).
    - ``unknown`` → a pending attempt becomes ``unknown``; the order stays in flight.

    Idempotent: an attempt already final is left as it is (``recorded`` False), so the
    same outcome recorded by two workers, or twice, has one effect. Locks the order row,
    then the attempt row (the same order as every other writer).
    """
    with transaction.atomic():
        order_id = ChargeAttempt.objects.values_list("order_id", flat=True).get(pk=attempt_id)
        order = CreditOrder.objects.select_for_update(of=("self",)).select_related("consumer").get(pk=order_id)
        attempt = ChargeAttempt.objects.select_for_update().get(pk=attempt_id)
        if attempt.status not in IN_FLIGHT_STATUSES:
            return RecordResult(attempt, recorded=False)
        now = timezone.now()
        if result.outcome == ChargeOutcome.SUCCEEDED:
            _apply_success(order, attempt, result, now)
        elif result.outcome in (ChargeOutcome.DECLINED, ChargeOutcome.NOT_FOUND):
            replacement = _apply_failure(order, attempt, result, now, replace_not_found=replace_not_found)
            return RecordResult(attempt, recorded=True, replacement=replacement)
        elif attempt.status == AttemptStatus.PENDING:
            attempt.status = AttemptStatus.UNKNOWN
            attempt.message = result.message[:MESSAGE_MAX]
            attempt.save(update_fields=["status", "message"])
        else:
            return RecordResult(attempt, recorded=False)
    return RecordResult(attempt, recorded=True)


def _record_results(
    pairs: Sequence[tuple[Outgoing, GatewayResult]], *, replace_not_found: bool = False
) -> tuple[Tally, list[Outgoing], set[int]]:
    """Record a chunk's outcomes: in bulk where possible, else one transaction per attempt.

    Returns the tally, replacement attempts to send, and the ids of attempts whose
    outcome could not be recorded (left pending or unknown: sent again or reconciled
    later, with the same key).
    """
    try:
        tally, rest = record_batch(pairs)
    except Exception:
        # A surprise in one row must not lose the chunk's outcomes: record them one by one instead.
        logger.warning("recording a chunk in bulk failed; recording attempt by attempt", exc_info=True)
        tally, rest = Tally(), list(pairs)
    replacements: list[Outgoing] = []
    unrecorded: set[int] = set()
    for item, result in rest:
        try:
            outcome = charge_attempt_record(
                attempt_id=item.attempt_id, result=result, replace_not_found=replace_not_found
            )
        except Exception:
            logger.exception("recording attempt %s failed; it will be sent again or reconciled", item.key)
            tally.errors += 1
            unrecorded.add(item.attempt_id)
            continue
        if outcome.recorded or outcome.attempt.status == AttemptStatus.UNKNOWN:
            tally.count(outcome.attempt.status, outcome.attempt.amount)
        if outcome.replacement is not None:
            replacements.append(outcome.replacement)
    return tally, replacements, unrecorded


def _fail_stale_runs(now: datetime) -> int:
    """Mark runs whose worker stopped reporting progress (killed) as failed, so the admin tells the truth."""
    return ChargeRun.objects.filter(
        status=ChargeRunStatus.RUNNING, progress_at__lt=now - settings.BNPL_CHARGE_RUN_STALE_AFTER
    ).update(status=ChargeRunStatus.FAILED, finished_at=now, note="the worker stopped reporting progress")


def _add_to_run(run: ChargeRun, tally: Tally, *, claimed: int = 0, resent: int = 0) -> None:
    ChargeRun.objects.filter(pk=run.pk).update(
        chunks=F("chunks") + 1,
        claimed=F("claimed") + claimed,
        resent=F("resent") + resent,
        succeeded=F("succeeded") + tally.succeeded,
        declined=F("declined") + tally.declined,
        unknown=F("unknown") + tally.unknown,
        errors=F("errors") + tally.errors,
        succeeded_amount=F("succeeded_amount") + tally.succeeded_amount,
        declined_amount=F("declined_amount") + tally.declined_amount,
        unknown_amount=F("unknown_amount") + tally.unknown_amount,
        progress_at=timezone.now(),
    )


def _finish_run(run: ChargeRun, *, status: str, note: str = "") -> ChargeRun:
    ChargeRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(), progress_at=timezone.now(), note=note
    )
    run.refresh_from_db()
    return run


# --------------------------------------------------------------------------- the runs


def run_charges(
    *,
    chunk_size: int | None = None,
    threads: int | None = None,
    max_orders: int | None = None,
    gateway: PaymentGateway | None = None,
    resend_pending_after: timedelta | None = None,
    time_budget: timedelta | None = None,
    worker: str = "",
    recorders: int | None = None,
) -> ChargeRun:
    """One charge run by this worker: charge every due order it can claim; returns its :class:`ChargeRun`.

    Safe to run on many workers at once and to run twice (django-q2 may deliver a task
    twice): orders are claimed with ``SKIP LOCKED`` and each attempt is recorded once.
    Stalled pending attempts (older than ``resend_pending_after``, default
    ``BNPL_CHARGE_RESEND_PENDING_AFTER``) are sent again first, with their own keys.
    Chunks are pipelined: the next chunk's gateway calls run while the previous chunks
    are recorded, by up to ``recorders`` (default ``BNPL_CHARGE_RECORDERS``, one when
    ``threads`` is 1) threads at once, each chunk in its own transaction with its own connection. Recording is mostly
    database work, so a second recorder keeps the database busy while the first one's
    Python runs (docs/charging.md, "Performance"); two chunks never share an order, and
    both take their locks in the one order every writer uses, as two runs side by side
    do. The run stops when nothing is due, after ``max_orders`` attempts, or when
    ``time_budget`` (default ``BNPL_CHARGE_RUN_TIME_BUDGET``) is spent. With a gateway that
    bounds its calls (``call_timeout_s``), a chunk holds no more calls than can finish within
    the budget left if every call times out (``threads`` at once, or the gateway's
    ``max_in_flight`` in a batch): a provider that is down cannot keep the run past its
    budget, and so past the cluster's timeout, by a chunk's worth. A gateway that takes
    batches (``charges_in_batches``: the in-process sandbox, the HTTP client) gets each chunk
    as one batch, on a pool thread; any other gets one call per charge, ``threads`` at once.
    Must not be called inside a transaction.
    """
    chunk_size = chunk_size or settings.BNPL_CHARGE_CHUNK_SIZE
    threads = threads or settings.BNPL_CHARGE_THREADS
    gateway = gateway or get_gateway()
    resend_after = settings.BNPL_CHARGE_RESEND_PENDING_AFTER if resend_pending_after is None else resend_pending_after
    budget = (time_budget or settings.BNPL_CHARGE_RUN_TIME_BUDGET).total_seconds()
    started = time.monotonic()
    batches = gateway.charges_in_batches
    at_once = gateway.max_in_flight if batches else threads  # bounded calls in flight at once, for the cap below
    _fail_stale_runs(timezone.now())
    run = ChargeRun.objects.create(kind=ChargeRunKind.CHARGE, worker=worker or _worker_id())
    sender = _Sender(threads)
    # threads=1 keeps the whole run on the calling thread and its connection (tests, the sequential breakdown).
    recorder = _Recorder(run, recorders or (settings.BNPL_CHARGE_RECORDERS if threads > 1 else 1))
    total = 0
    try:
        while True:
            room = chunk_size if max_orders is None else min(chunk_size, max_orders - total)
            left = budget - (time.monotonic() - started)
            if gateway.call_timeout_s:  # no more calls than can time out, in turn, within the budget
                room = min(room, at_once * int(left // gateway.call_timeout_s))
            items: list[Outgoing] = []
            if room > 0 and left > 0:
                now = timezone.now()
                items = claim_stalled(limit=room, now=now, older_than=resend_after, exclude=recorder.in_hand())
                resent = len(items)
                if len(items) < room:
                    items += claim_due(run_id=run.pk, limit=room - len(items), now=now)
            if not items:
                break
            total += len(items)
            if batches:
                collect = sender.submit_batch(lambda chunk: _charge_batch(gateway, chunk), items)
            else:
                collect = sender.submit(lambda item: _charge_one(gateway, item), items)
            recorder.record((items, collect, resent))
        recorder.finish()
    except BaseException as exc:
        recorder.abandon()
        _finish_run(run, status=ChargeRunStatus.FAILED, note=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        sender.close()
        recorder.close()
    return _finish_run(run, status=ChargeRunStatus.FINISHED)


_Chunk = tuple[list[Outgoing], Callable[[], list[tuple[GatewayResult, bool]]], int]


class _Recorder:
    """Records a run's chunks, up to ``recorders`` at once, each on its own thread and connection.

    :meth:`record` is called once a chunk's gateway calls are started. It waits while ``recorders``
    chunks are being recorded (so a slow database slows the claiming down instead of piling chunks
    up), then hands the chunk over. With one recorder the previous chunk is recorded on the calling
    thread while this one's calls run, as before. ``in_hand`` holds the attempts sent and not yet
    recorded: the run never resends those itself (``claim_stalled``).
    """

    def __init__(self, run: ChargeRun, recorders: int) -> None:
        self.run = run
        self.recorders = max(1, int(recorders))
        self.pool = ThreadPoolExecutor(self.recorders, thread_name_prefix="record") if self.recorders > 1 else None
        self.pending: list[Future[None]] = []
        self.previous: _Chunk | None = None  # one recorder: the chunk whose calls run while the last is recorded
        self.lock = threading.Lock()
        self._in_hand: set[int] = set()

    def in_hand(self) -> set[int]:
        with self.lock:
            return set(self._in_hand)

    def record(self, chunk: _Chunk) -> None:
        with self.lock:
            self._in_hand.update(item.attempt_id for item in chunk[0])
        if self.pool is None:
            previous, self.previous = self.previous, chunk
            if previous is not None:
                self._record(previous)
            return
        while len(self.pending) >= self.recorders:
            self.pending.pop(0).result()  # the oldest first: a failure stops the run as it did in line
        self.pending.append(self.pool.submit(self._record, chunk))

    def finish(self) -> None:
        if self.previous is not None:
            previous, self.previous = self.previous, None
            self._record(previous)
        while self.pending:
            self.pending.pop(0).result()

    def abandon(self) -> None:
        """After a failure: let the chunks already handed over finish (their gateway calls are made)."""
        for future in self.pending:
            with contextlib.suppress(Exception):
                future.result()
        self.pending.clear()

    def close(self) -> None:
        if self.pool is not None:
            shutdown_closing_connections(self.pool, self.recorders)

    def _record(self, chunk: _Chunk) -> None:
        items, collect, resent = chunk
        results = collect()
        tally, _replacements, unrecorded = _record_results(
            [(item, r) for item, (r, _e) in zip(items, results, strict=True)]
        )
        tally.errors += sum(1 for _r, error in results if error)
        _add_to_run(self.run, tally, claimed=len(items) - resent, resent=resent)
        with self.lock:
            self._in_hand.difference_update(item.attempt_id for item in items if item.attempt_id not in unrecorded)


def reconcile_unknown_attempts(
    *,
    older_than: timedelta | None = None,
    chunk_size: int | None = None,
    threads: int | None = None,
    gateway: PaymentGateway | None = None,
    limit: int | None = None,
) -> ChargeRun:
    """Ask the gateway what became of every ``unknown`` attempt, and record the real outcome.

    Only attempts last sent at least ``older_than`` ago (default ``BNPL_RECONCILE_AFTER``)
    are asked about, so that no request can still be landing at the provider when it
    answers ``not_found``. Succeeded → the order is paid (one charge); declined → the
    retry schedule; ``not_found`` → the attempt is closed as ``not_found`` and, when the
    order is due, a replacement attempt (trigger ``reconcile``, a new key) is sent at
    once; still unknown → left for the next run. Returns the run row (kind reconcile).
    """
    older_than = settings.BNPL_RECONCILE_AFTER if older_than is None else older_than
    chunk_size = chunk_size or settings.BNPL_CHARGE_CHUNK_SIZE
    gateway = gateway or get_gateway()
    run = ChargeRun.objects.create(kind=ChargeRunKind.RECONCILE, worker=_worker_id())
    sender = _Sender(threads or settings.BNPL_CHARGE_THREADS)
    seen: set[int] = set()
    try:
        while limit is None or len(seen) < limit:
            size = chunk_size if limit is None else min(chunk_size, limit - len(seen))
            now = timezone.now()
            rows = list(
                ChargeAttempt.objects.filter(status=AttemptStatus.UNKNOWN, last_sent_at__lte=now - older_than)
                .exclude(pk__in=seen)
                .order_by("last_sent_at")
                .values_list("id", "order_id", "idempotency_key", "funding_token", "amount")[:size]
            )
            if not rows:
                break
            items = [Outgoing(*row) for row in rows]
            seen.update(item.attempt_id for item in items)
            results = sender.submit(lambda item: _query_one(gateway, item), items)()
            tally, replacements, _unrecorded = _record_results(
                [(item, r) for item, (r, _e) in zip(items, results, strict=True)], replace_not_found=True
            )
            tally.errors += sum(1 for _r, error in results if error)
            if replacements:
                sent = sender.submit(lambda item: _charge_one(gateway, item), replacements)()
                more, _none, _unrecorded = _record_results(
                    [(item, r) for item, (r, _e) in zip(replacements, sent, strict=True)]
                )
                more.errors += sum(1 for _r, error in sent if error)
                tally.add(more)
            _add_to_run(run, tally, claimed=len(items), resent=len(replacements))
    except BaseException as exc:
        _finish_run(run, status=ChargeRunStatus.FAILED, note=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        sender.close()
    return _finish_run(run, status=ChargeRunStatus.FINISHED)


# --------------------------------------------------------------------------- charging one order now


def _start_attempt(*, actor: Actor, order: CreditOrder, trigger: str, consumer: Consumer | None) -> Outgoing:
    with transaction.atomic(durable=True):
        order = _lock_order(order)
        if consumer is not None and order.consumer_id != consumer.pk:
            raise NotAllowed(_("This order belongs to someone else."), code="wrong_consumer")
        if order.status not in PAYABLE:
            raise _refusal(order, _("paid now"))
        if order.charge_in_flight:
            raise NotAllowed(_("A payment of this order is already in progress."), code="charge_in_progress")
        now = timezone.now()
        token = funding_tokens([order.consumer_id]).get(order.consumer_id, "")  # type: ignore[list-item]
        attempt = _new_attempt(order, trigger=trigger, token=token, now=now, actor=actor)
        order.save(update_fields=["charge_in_flight", "charge_attempt_count", "updated_at"])
    return _outgoing(attempt)


def credit_order_charge_now(
    *,
    actor: Actor,
    order: CreditOrder,
    trigger: str,
    consumer: Consumer | None = None,
    gateway: PaymentGateway | None = None,
) -> ChargeAttempt:
    """Charge one order now, synchronously, through the same idempotent path as the run.

    Writes the attempt (``trigger``) in its own transaction, calls the gateway outside
    any transaction, records the outcome; returns the attempt as recorded (``unknown``
    when the gateway could not say: reconciliation settles it). Refused, changing
    nothing, when the order is not payable (``InvalidTransition``) or a charge of it is
    already in flight (``NotAllowed``, code ``charge_in_progress``): a double click
    charges once. When recording fails after the call, the attempt stays pending and the
    charge run sends it again with the same key.
    """
    _refuse_inside_transaction()
    item = _start_attempt(actor=actor, order=order, trigger=trigger, consumer=consumer)
    result, _error = _charge_one(gateway or get_gateway(), item)
    charge_attempt_record(attempt_id=item.attempt_id, result=result)
    return ChargeAttempt.objects.get(pk=item.attempt_id)


def credit_order_pay_now(
    *, actor: Actor, order: CreditOrder, consumer: Consumer, gateway: PaymentGateway | None = None
) -> ChargeAttempt:
    """The consumer pays an order now: early (completed, before it is due) or late (collecting, overdue).

    Only the order's own consumer may; see :func:`credit_order_charge_now`. A declined
    pay-now leaves the order's state and retry schedule as they were.
    """
    return credit_order_charge_now(
        actor=actor, order=order, trigger=ChargeTrigger.PAY_NOW, consumer=consumer, gateway=gateway
    )


@transaction.atomic(durable=True)
def credit_order_retry_charge(*, actor: Actor, order: CreditOrder) -> CreditOrder:
    """Staff bring a collecting or overdue order's next charge attempt forward to now.

    The next charge run (within a minute) makes the attempt. Refused for orders not in
    collection, and while an attempt is in flight. Writes an event naming the actor.
    """
    order = _lock_order(order)
    if order.status not in (S.COLLECTING, S.OVERDUE):
        raise _refusal(order, _("retried"))
    if order.charge_in_flight:
        raise NotAllowed(_("A charge of this order is already in progress."), code="charge_in_progress")
    now = timezone.now()
    order.next_attempt_at = now
    order.save(update_fields=["next_attempt_at", "updated_at"])
    OrderEvent.objects.create(
        order=order,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_kind=ActorKind.STAFF,
        from_status=order.status,
        to_status=order.status,
        reason=_("Charge retry requested"),
        data={"event": "retry_requested", "next_attempt_at": now.isoformat()},
    )
    return order
