"""The payment gateway interface the platform charges and refunds through.

A provider is reached by idempotency key: the platform picks a key for each charge
attempt or refund, saves it before calling, and sends the same key again on every
network retry of that attempt. A provider that honours keys (every real one does,
and so does the sandbox) then moves money at most once per key, whatever happens to
the network.

Outcomes are deliberately three-valued. ``declined`` means the provider refused and
no money moved; ``unknown`` means the platform cannot tell (a timeout, a lost
response, a 5xx) and must ask again with :meth:`PaymentGateway.query` rather than
try a new charge. ``not_found`` is what ``query`` answers when the provider never
saw the key, the one case where a new attempt is safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

#: What one charge asks: ``(idempotency_key, funding_source, amount)``, as :meth:`PaymentGateway.charge` takes them.
ChargeArgs = tuple[str, str, Decimal]


class ChargeOutcome(models.TextChoices):
    """What became of a gateway request (usable as model field choices)."""

    SUCCEEDED = "succeeded", _("Succeeded")
    DECLINED = "declined", pgettext_lazy("payment outcome", "Declined")
    UNKNOWN = "unknown", _("Unknown")
    # Only from query(): the provider has no request under that key.
    NOT_FOUND = "not_found", _("Not found")


class DeclineCode(models.TextChoices):
    """Why a provider refused; ``declined`` always carries one of these."""

    INSUFFICIENT_FUNDS = "insufficient_funds", _("Insufficient funds")
    CARD_FROZEN = "card_frozen", _("Card frozen")
    ACCOUNT_CLOSED = "account_closed", _("Account closed")
    RISK_REJECTED = "risk_rejected", _("Rejected by risk control")
    # Refunds only.
    CHARGE_NOT_FOUND = "charge_not_found", _("Charge not found")
    REFUND_EXCEEDS_CHARGE = "refund_exceeds_charge", _("Refund exceeds the amount charged")


class GatewayRequestError(ValueError):
    """A request the provider rejects as malformed (bad amount, a key reused for a different request).

    Not an outcome: no money moved, and the caller has a bug to fix rather than a
    state to record.
    """


@dataclass(frozen=True)
class GatewayResult:
    """The answer to a charge, refund or query.

    ``reference`` is the provider's id of the charge or refund (set whenever the
    provider recorded the request, succeeded or declined); ``amount`` is the amount
    the provider recorded, when it did.
    """

    outcome: str
    reference: str | None = None
    decline_code: str | None = None
    message: str = ""
    amount: Decimal | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == ChargeOutcome.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amount as a string, never a float)."""
        return {
            "outcome": str(self.outcome),
            "reference": self.reference,
            "decline_code": None if self.decline_code is None else str(self.decline_code),
            "message": self.message,
            "amount": None if self.amount is None else str(self.amount),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatewayResult:
        outcome = data.get("outcome")
        if outcome not in ChargeOutcome.values:
            raise GatewayRequestError(f"unexpected outcome {outcome!r}")
        amount = data.get("amount")
        return cls(
            outcome=ChargeOutcome(outcome),
            reference=data.get("reference"),
            decline_code=data.get("decline_code"),
            message=str(data.get("message") or ""),
            amount=None if amount is None else Decimal(str(amount)),
        )


def unknown(message: str) -> GatewayResult:
    """The result for a request whose fate the caller cannot know (timeout, lost response, 5xx)."""
    return GatewayResult(outcome=ChargeOutcome.UNKNOWN, message=message)


class PaymentGateway(ABC):
    """A payment provider. Never call it inside a database transaction: it may take seconds,
    and its effects cannot be rolled back with the caller's."""

    #: The longest one call can take, when the client bounds it (seconds); None when it does not. The charge
    #: run sizes its last chunks by it, so that a provider timing out on every call cannot keep a run past
    #: its time budget (``bnpl.charging.run_charges``).
    call_timeout_s: float | None = None
    #: Whether :meth:`charge_batch` is the better way to send a chunk: one call to the provider (the in-process
    #: sandbox) or the chunk's requests driven together (the HTTP client). The charge run sends such a gateway
    #: each chunk as one batch, and any other one call per charge, concurrently (``bnpl.charging.run_charges``).
    charges_in_batches: bool = False
    #: How many of a batch's charges are in flight at once, when the gateway bounds its calls: a batch then
    #: takes at most ``ceil(len(batch) / max_in_flight)`` times ``call_timeout_s``.
    max_in_flight: int = 1

    @abstractmethod
    def charge(self, idempotency_key: str, funding_source: str, amount: Decimal) -> GatewayResult:
        """Take ``amount`` from the consumer's ``funding_source`` (a provider token), once per key."""

    def charge_batch(self, requests: Sequence[ChargeArgs]) -> list[GatewayResult]:
        """Charge many at once: one result per ``(idempotency_key, funding_source, amount)``, in order.

        Each request is the same as a :meth:`charge` with those arguments, its key honoured the same way; only
        the transport differs. Here, for a provider without a batch endpoint, one call after another; a gateway
        that sends the batch as one call overrides this and sets :attr:`charges_in_batches`.
        """
        return [self.charge(key, funding_source, amount) for key, funding_source, amount in requests]

    @abstractmethod
    def refund(self, idempotency_key: str, charge_ref: str, amount: Decimal) -> GatewayResult:
        """Give back ``amount`` of the charge ``charge_ref``, once per key; never more than was charged."""

    @abstractmethod
    def query(self, idempotency_key: str) -> GatewayResult:
        """The outcome of an earlier charge, refund or payout under that key, or ``not_found``."""

    @abstractmethod
    def payout(self, idempotency_key: str, account: str, amount: Decimal) -> GatewayResult:
        """Transfer ``amount`` to the merchant's bank ``account``, once per key (declined: no money moved)."""
