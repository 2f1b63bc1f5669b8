"""Switchable, reproducible faults of the sandbox provider.

Which request meets a fault is decided by a hash of the configured ``seed``, the
fault's name and the request's idempotency key, not by a random draw or a counter:
a test or benchmark run is reproducible, concurrent workers cannot change who is
hit, and a network retry of the same request meets the same fault (as it would
when a provider is down for that request's shard).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bnpl.models import SandboxFaultConfig
from bnpl.sql_rows import fetch_prepared

_ZERO = Decimal(0)
_ONE = Decimal(1)
_BUCKETS = Decimal(2**32)


@dataclass(frozen=True)
class SandboxFaults:
    """A snapshot of the fault configuration (see ``SandboxFaultConfig`` for each field)."""

    latency_ms: int = 0
    timeout_rate: Decimal = _ZERO
    lost_response_rate: Decimal = _ZERO
    error_rate: Decimal = _ZERO
    risk_reject_rate: Decimal = _ZERO
    seed: int = 0

    def hits(self, fault: str, idempotency_key: str) -> bool:
        """Whether ``fault`` (timeout, lost_response, error, risk_reject) strikes this request."""
        rate = Decimal(getattr(self, f"{fault}_rate"))
        if rate <= _ZERO:
            return False
        if rate >= _ONE:
            return True
        digest = hashlib.sha256(f"{self.seed}:{fault}:{idempotency_key}".encode()).digest()
        return Decimal(int.from_bytes(digest[:4], "big")) < rate * _BUCKETS

    def delay(self) -> None:
        """Wait the added latency, as a slow provider would."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)

    def before_processing(self, idempotency_key: str) -> str | None:
        """The fault that stops a request before the provider processes it: ``timeout``, ``error`` or None."""
        for fault in ("timeout", "error"):
            if self.hits(fault, idempotency_key):
                return fault
        return None


NO_FAULTS = SandboxFaults()
#: The fault configuration's row; :func:`faults_from_row` reads it.
LOAD_SQL = (
    "SELECT latency_ms, timeout_rate, lost_response_rate, error_rate, risk_reject_rate, seed "
    "FROM bnpl_sandboxfaultconfig WHERE id = %s"
)


def sandbox_faults_load() -> SandboxFaults:
    """The faults currently configured in the database (none when never configured)."""
    # Read on every provider request, so a fault switched on elsewhere applies at once: one fixed query,
    # prepared (compiling the ORM query, then planning the SQL, each cost more than running it).
    return faults_from_row(fetch_prepared(LOAD_SQL, [SandboxFaultConfig.SINGLETON_PK]))


def faults_from_row(row: Sequence[Any] | None) -> SandboxFaults:
    """The faults of :data:`LOAD_SQL`'s row (``SandboxFaultConfig.SINGLETON_PK``); none when never configured."""
    return NO_FAULTS if row is None else SandboxFaults(*row)
