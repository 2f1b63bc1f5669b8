"""The sandbox payment provider: simulated funding sources that behave like a real provider.

``sandbox_charge``, ``sandbox_refund``, ``sandbox_payout`` and ``sandbox_query`` are the provider's own
processing, shared by the in-process gateway and the HTTP endpoint
(``bnpl.gateway.views``). Like a real provider they honour idempotency keys: the same
key returns the original result and never moves money twice, even when many
requests with that key arrive at once. Declines are deterministic: an unknown
source is ``account_closed``, a frozen one ``card_frozen``, a short balance
``insufficient_funds``.

Each request is the provider's own database transaction (``durable=True``). That is
the provider's work, not the caller's: the caller must not be inside a transaction
when it calls a gateway, and the durable block makes an in-process call from inside
one fail loudly instead of silently tying the "provider" to the caller's rollback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum

from bnpl.gateway.base import (
    ChargeArgs,
    ChargeOutcome,
    DeclineCode,
    GatewayRequestError,
    GatewayResult,
    PaymentGateway,
    unknown,
)
from bnpl.gateway.faults import SandboxFaults, sandbox_faults_load
from bnpl.models import SandboxCharge, SandboxFundingSource, SandboxPayout, SandboxRefund
from bnpl.models.gateway import SandboxChargeStatus, SandboxPayoutStatus, new_charge_reference
from bnpl.money import ZERO, MoneyError, parse_money
from bnpl.sql_rows import fetch_all_prepared, fetch_prepared

DECLINE_MESSAGES = {
    DeclineCode.ACCOUNT_CLOSED: "the funding source does not exist or is closed",
    DeclineCode.CARD_FROZEN: "the funding source is frozen",
    DeclineCode.INSUFFICIENT_FUNDS: "the balance does not cover the amount",
    DeclineCode.RISK_REJECTED: "rejected by the provider's risk control",
    DeclineCode.CHARGE_NOT_FOUND: "no succeeded charge with that reference",
    DeclineCode.REFUND_EXCEEDS_CHARGE: "the refunds would exceed the amount charged",
}
#: The provider's charge: one statement, one transaction, prepared once per connection (``fetch_prepared``).
CHARGE_SQL = (
    "SELECT c.* FROM set_config('synchronous_commit', 'off', true), bnpl_sandbox_charge(%s, %s, %s, %s, %s) AS c"
)
#: Many charges in one statement: the same function for each request, in the order of the arrays, each result row
#: numbered by its place in them (``WITH ORDINALITY``).
CHARGE_BATCH_SQL = (
    "SELECT v.n, c.* FROM set_config('synchronous_commit', 'off', true), "
    "unnest(%s::text[], %s::text[], %s::numeric[], %s::boolean[], %s::text[]) WITH ORDINALITY "
    "AS v(key, token, amount, risk_reject, reference, n), "
    "LATERAL bnpl_sandbox_charge(v.key, v.token, v.amount, v.risk_reject, v.reference) AS c"
)
#: A sandbox bank account number ending in this is a closed account: payouts to it are declined.
CLOSED_ACCOUNT_SUFFIX = "0000"
PAYOUT_DECLINE_MESSAGES = {
    DeclineCode.ACCOUNT_CLOSED: "the receiving bank account is closed or invalid",
    DeclineCode.RISK_REJECTED: "rejected by the provider's risk control",
}


def _amount(value: object) -> Decimal:
    try:
        return parse_money(value, allow_zero=False)
    except MoneyError as exc:
        raise GatewayRequestError(str(exc)) from exc


def _key(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise GatewayRequestError("the idempotency key must be a string of 1 to 128 characters")
    return value


def _token(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise GatewayRequestError(f"the {what} must be a non-empty string")
    return value


def _charge_result(charge: SandboxCharge) -> GatewayResult:
    if charge.status == SandboxChargeStatus.SUCCEEDED:
        return GatewayResult(
            outcome=ChargeOutcome.SUCCEEDED, reference=charge.reference, message="charged", amount=charge.amount
        )
    return GatewayResult(
        outcome=ChargeOutcome.DECLINED,
        reference=charge.reference,
        decline_code=DeclineCode(charge.decline_code),
        message=DECLINE_MESSAGES.get(charge.decline_code, "declined"),
        amount=charge.amount,
    )


def _refund_result(refund: SandboxRefund) -> GatewayResult:
    return GatewayResult(
        outcome=ChargeOutcome.SUCCEEDED, reference=refund.reference, message="refunded", amount=refund.amount
    )


def _replay_charge(charge: SandboxCharge, funding_token: str, amount: Decimal) -> GatewayResult:
    if charge.funding_token != funding_token or charge.amount != amount:
        raise GatewayRequestError("idempotency key already used for a different charge")
    return _charge_result(charge)


def _replay_refund(refund: SandboxRefund, charge_ref: str, amount: Decimal) -> GatewayResult:
    if refund.charge.reference != charge_ref or refund.amount != amount:
        raise GatewayRequestError("idempotency key already used for a different refund")
    return _refund_result(refund)


def sandbox_charge(
    idempotency_key: str, funding_token: str, amount: object, *, risk_reject: bool = False
) -> GatewayResult:
    """Process a charge once per key; declines are recorded under their key too.

    The work is one database function (``bnpl_sandbox_charge``, migrations 0009 and 0019): it
    locks the funding source first, so concurrent requests for one source queue, then inserts the
    charge ``ON CONFLICT (idempotency_key) DO NOTHING``: the unique key decides whether the request
    is new (a duplicate naming another source waits there for the first to commit), and only a
    duplicate reads the recorded charge, to replay it. One round trip instead of five keeps the
    provider's own cost small next to the charge run it serves (docs/charging.md, "Performance").

    The provider's transaction commits without waiting for its WAL flush (``synchronous_commit``
    off for this transaction only): a real provider's durability costs its own machines, not the
    platform's, and the wait was most of a sandbox charge's time. The sandbox's tables are the
    platform's, on the platform's database server, and there nothing the platform relies on is
    weakened: the WAL is one sequence, so the caller's own durable commit of the outcome (or of
    anything later) flushes the charge too; only a server crash before any later flush can lose
    it, and then the charge is lost whole (balance and record), which the attempt's reconcile
    reads as "never charged", as with a request the provider never received. (A sandbox served
    from a database server of its own, through ``BNPL_GATEWAY_URL``, could lose in its own crash
    a charge the platform has recorded: acceptable for a test double, never for a provider.)
    """
    request = charge_request(idempotency_key, funding_token, amount, risk_reject=risk_reject)
    # One statement is one transaction: outside any transaction it runs in autocommit, with no BEGIN and
    # COMMIT round trips. Inside one, the durable block refuses a caller's transaction as before (a test
    # case's own transaction is allowed, and the block gives the call its savepoint).
    durable = transaction.atomic(durable=True) if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with durable:
            row = fetch_prepared(CHARGE_SQL, request.params)
    except IntegrityError:  # only the charge reference, drawn at random, can collide
        existing = SandboxCharge.objects.filter(idempotency_key=request.key).first()
        if existing is None:
            raise
        return _replay_charge(existing, request.token, request.amount)
    return charge_outcome(request, row)


def sandbox_charge_batch(requests: Sequence[ChargeRequest]) -> list[GatewayResult]:
    """Process many charges in one statement and one transaction: :func:`sandbox_charge` for each, in one round trip.

    A provider's batch endpoint, for the in-process gateway: the charge run sends a chunk of a few hundred
    charges this way instead of a few hundred calls, each of which cost as much in protocol and Python as
    the provider's work itself (docs/charging.md, "Performance"). Each request runs the same function with
    the same checks and idempotency as alone and sees the requests run before it: two on one source share
    its balance, a key twice is charged once. They run grouped by funding source, so that batches lock the
    sources they share in one order, and in the order given within a source (the first of a consumer's
    charges is the one a short balance still covers, as one call after another would have it). The
    sources stay locked until the statement ends.

    The requests come checked (:func:`charge_request` refuses a malformed one before a batch is built).
    Raises a database error when the statement fails (a collision of the random charge references, or a deadlock
    with a request reusing one of the batch's keys for another source): nothing is processed. Raises
    :class:`GatewayRequestError` when a request reuses a key recorded for another charge: the statement
    has committed by then, the others are processed. In every case the caller may send the requests
    again, one by one, with the same keys: each processed one is replayed.
    """
    if not requests:
        return []
    order, params = charge_batch_params(requests)
    durable = transaction.atomic(durable=True) if connection.in_atomic_block else contextlib.nullcontext()
    with durable:
        rows = fetch_all_prepared(CHARGE_BATCH_SQL, params)
    return [charge_outcome(request, row) for request, row in zip(requests, charge_batch_rows(order, rows), strict=True)]


def charge_batch_params(requests: Sequence[ChargeRequest]) -> tuple[list[int], list[list[object]]]:
    """The order a batch runs in (the requests' indexes: by funding source, then as given) and
    :data:`CHARGE_BATCH_SQL`'s array parameters in that order; shared with the lean server's batches."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i].token, i))
    columns = zip(*(requests[i].params for i in order), strict=True)
    return order, [list(column) for column in columns]


def charge_batch_rows(order: Sequence[int], rows: Sequence[Sequence[object]]) -> list[Sequence[object]]:
    """:data:`CHARGE_BATCH_SQL`'s rows in the requests' order, each as :func:`charge_outcome` reads it."""
    by_request: list[Sequence[object] | None] = [None] * len(order)
    for n, *row in rows:
        by_request[order[n - 1]] = row
    if any(row is None for row in by_request):  # the function returns one row per request
        raise RuntimeError("the sandbox's batch charge returned fewer rows than requests")
    return by_request  # type: ignore[return-value]


@dataclass(frozen=True)
class ChargeRequest:
    """A checked charge request and the parameters of :data:`CHARGE_SQL` for it (with a new reference)."""

    key: str
    token: str
    amount: Decimal
    params: tuple[object, ...]


def charge_request(
    idempotency_key: object, funding_token: object, amount: object, *, risk_reject: bool
) -> ChargeRequest:
    """Check a charge request (``GatewayRequestError`` when malformed) and bind :data:`CHARGE_SQL`'s parameters.

    Shared by :func:`sandbox_charge`, :func:`sandbox_charge_batch` and the lean server's own asynchronous
    connections (``bnpl.gateway.server``), which run the batch statement and read each row with
    :func:`charge_outcome`.
    """
    key, value = _key(idempotency_key), _amount(amount)
    token = _token(funding_token, "funding source")
    return ChargeRequest(key, token, value, (key, token, value, risk_reject, new_charge_reference()))


def charge_outcome(request: ChargeRequest, row: Sequence[object]) -> GatewayResult:
    """The result of :data:`CHARGE_SQL`'s row: the new charge, or the recorded one replayed."""
    charge_id, reference, status, decline_code, recorded_token, recorded_amount, replayed = row
    charge = SandboxCharge(
        pk=charge_id,
        idempotency_key=request.key,
        funding_token=recorded_token,
        amount=recorded_amount,
        status=status,
        decline_code=decline_code,
        reference=reference,
    )
    return _replay_charge(charge, request.token, request.amount) if replayed else _charge_result(charge)


def sandbox_refund(idempotency_key: str, charge_ref: str, amount: object) -> GatewayResult:
    """Refund part or all of a succeeded charge, once per key; Σ refunds never exceeds the charge.

    The charge row is locked while the refunded total is summed and the refund added,
    so two concurrent refunds cannot both fit in the same remainder. A refused refund
    is not recorded (the same key may be tried again).
    """
    key, value = _key(idempotency_key), _amount(amount)
    ref = _token(charge_ref, "charge reference")
    try:
        with transaction.atomic(durable=True):
            charge = SandboxCharge.objects.select_for_update().filter(reference=ref).first()
            existing = SandboxRefund.objects.select_related("charge").filter(idempotency_key=key).first()
            if existing is not None:
                return _replay_refund(existing, ref, value)
            if charge is None or charge.status != SandboxChargeStatus.SUCCEEDED:
                return GatewayResult(
                    outcome=ChargeOutcome.DECLINED,
                    decline_code=DeclineCode.CHARGE_NOT_FOUND,
                    message=DECLINE_MESSAGES[DeclineCode.CHARGE_NOT_FOUND],
                )
            refunded = charge.refunds.aggregate(total=Sum("amount"))["total"] or ZERO
            if refunded + value > charge.amount:
                return GatewayResult(
                    outcome=ChargeOutcome.DECLINED,
                    decline_code=DeclineCode.REFUND_EXCEEDS_CHARGE,
                    message=f"{DECLINE_MESSAGES[DeclineCode.REFUND_EXCEEDS_CHARGE]}: "
                    f"{charge.amount - refunded} of {charge.amount} is refundable",
                )
            refund = SandboxRefund.objects.create(idempotency_key=key, charge=charge, amount=value)
            SandboxFundingSource.objects.filter(pk=charge.funding_source_id).update(
                balance_amount=F("balance_amount") + value
            )
            return _refund_result(refund)
    except IntegrityError:
        existing = SandboxRefund.objects.select_related("charge").filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _replay_refund(existing, ref, value)


def _payout_result(payout: SandboxPayout) -> GatewayResult:
    if payout.status == SandboxPayoutStatus.SUCCEEDED:
        return GatewayResult(
            outcome=ChargeOutcome.SUCCEEDED, reference=payout.reference, message="paid out", amount=payout.amount
        )
    return GatewayResult(
        outcome=ChargeOutcome.DECLINED,
        reference=payout.reference,
        decline_code=DeclineCode(payout.decline_code),
        message=PAYOUT_DECLINE_MESSAGES.get(payout.decline_code, "declined"),
        amount=payout.amount,
    )


def _replay_payout(payout: SandboxPayout, account: str, amount: Decimal) -> GatewayResult:
    if payout.account != account or payout.amount != amount:
        raise GatewayRequestError("idempotency key already used for a different payout")
    return _payout_result(payout)


def sandbox_payout(
    idempotency_key: str, account: object, amount: object, *, risk_reject: bool = False
) -> GatewayResult:
    """Pay ``amount`` out to a bank account, once per key; declines are recorded under their key too.

    Deterministic declines: an account that is not 8 to 34 digits, or that ends in ``0000``, is
    ``account_closed``. The unique key makes concurrent duplicates replay the first.
    """
    key, value = _key(idempotency_key), _amount(amount)
    number = _token(account, "account").strip()
    if len(number) > 64:
        raise GatewayRequestError("the account must be at most 64 characters")
    try:
        with transaction.atomic(durable=True):
            existing = SandboxPayout.objects.filter(idempotency_key=key).first()
            if existing is not None:
                return _replay_payout(existing, number, value)
            if not (number.isdigit() and 8 <= len(number) <= 34) or number.endswith(CLOSED_ACCOUNT_SUFFIX):
                decline = DeclineCode.ACCOUNT_CLOSED
            elif risk_reject:
                decline = DeclineCode.RISK_REJECTED
            else:
                decline = None
            payout = SandboxPayout.objects.create(
                idempotency_key=key,
                account=number,
                amount=value,
                status=SandboxPayoutStatus.DECLINED if decline else SandboxPayoutStatus.SUCCEEDED,
                decline_code=decline or "",
            )
            return _payout_result(payout)
    except IntegrityError:
        existing = SandboxPayout.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _replay_payout(existing, number, value)


def sandbox_query(idempotency_key: str) -> GatewayResult:
    """What the provider recorded under a key: a charge's or payout's result, a succeeded refund, or ``not_found``."""
    key = _key(idempotency_key)
    charge = SandboxCharge.objects.filter(idempotency_key=key).first()
    if charge is not None:
        return _charge_result(charge)
    refund = SandboxRefund.objects.filter(idempotency_key=key).first()
    if refund is not None:
        return _refund_result(refund)
    payout = SandboxPayout.objects.filter(idempotency_key=key).first()
    if payout is not None:
        return _payout_result(payout)
    return GatewayResult(outcome=ChargeOutcome.NOT_FOUND, message="no request with this idempotency key")


def _not_processed(fault: str) -> GatewayResult:
    return unknown(f"sandbox: {fault} (simulated), request not processed")


def _response_lost() -> GatewayResult:
    return unknown("sandbox: response lost (simulated)")


class InProcessSandboxGateway(PaymentGateway):
    """The sandbox provider called directly, in this process (the default gateway).

    ``faults`` fixes the fault configuration (``NO_FAULTS`` for a fast, fault-free
    run); when None, the configuration row is read on every call so faults switched
    on elsewhere take effect at once. Faults act as they would over a network: a
    timeout or 5xx returns ``unknown`` without processing, a lost response processes
    the request and then returns ``unknown``.
    """

    def __init__(self, faults: SandboxFaults | None = None, *, batches: bool = True) -> None:
        self._faults = faults
        # ``batches=False``: the charge run sends one call per charge, concurrently, as to a provider without a
        # batch endpoint (the tests' and ``bench/charge_run.py --one-call-per-charge``'s way to that path).
        self.charges_in_batches = batches

    def _current_faults(self) -> SandboxFaults:
        return self._faults if self._faults is not None else sandbox_faults_load()

    def _through_faults(self, idempotency_key: str, process: Callable[[SandboxFaults], GatewayResult]) -> GatewayResult:
        """Run ``process`` as the network around a provider would: delayed, stopped before it, or its answer lost."""
        faults = self._current_faults()
        faults.delay()
        stopped = faults.before_processing(idempotency_key)
        if stopped:
            return _not_processed(stopped)
        result = process(faults)
        if faults.hits("lost_response", idempotency_key):
            return _response_lost()
        return result

    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        return self._through_faults(
            idempotency_key,
            lambda faults: sandbox_charge(
                idempotency_key, funding_source, amount, risk_reject=faults.hits("risk_reject", idempotency_key)
            ),
        )

    def charge_batch(self, requests: Sequence[ChargeArgs]) -> list[GatewayResult]:
        """The chunk as one request to the provider: one latency, then each charge's own faults, then one statement.

        A request stopped by a timeout or error fault is not processed; a lost response is processed and
        answered ``unknown``; a risk rejection declines — each decided by the request's own key, as for
        :meth:`charge`.
        """
        faults = self._current_faults()
        faults.delay()
        results: list[GatewayResult | None] = [None] * len(requests)
        sent: list[int] = []
        for index, (key, _token, _amount) in enumerate(requests):
            stopped = faults.before_processing(key)
            if stopped:
                results[index] = _not_processed(stopped)
            else:
                sent.append(index)
        processed = sandbox_charge_batch(
            [
                charge_request(key, token, amount, risk_reject=faults.hits("risk_reject", key))
                for key, token, amount in (requests[index] for index in sent)
            ]
        )
        for index, result in zip(sent, processed, strict=True):
            lost = faults.hits("lost_response", requests[index][0])
            results[index] = _response_lost() if lost else result
        return results  # type: ignore[return-value]

    def refund(self, idempotency_key: str, charge_ref: str, amount: Decimal) -> GatewayResult:
        return self._through_faults(
            idempotency_key, lambda _faults: sandbox_refund(idempotency_key, charge_ref, amount)
        )

    def payout(self, idempotency_key: str, account: str, amount: Decimal) -> GatewayResult:
        return self._through_faults(
            idempotency_key,
            lambda faults: sandbox_payout(
                idempotency_key, account, amount, risk_reject=faults.hits("risk_reject", idempotency_key)
            ),
        )

    def query(self, idempotency_key: str) -> GatewayResult:
        self._current_faults().delay()
        return sandbox_query(idempotency_key)
