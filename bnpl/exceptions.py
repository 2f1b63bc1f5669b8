"""Domain exceptions raised by services and turned into form errors or 4xx by views.

A dependency-free leaf like :mod:`bnpl.money`, so every app raises the same
exceptions. Each carries a stable ``code`` (the API's error code later) and, when
the error is about input, ``fields`` naming what to fix.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the platform refuses; nothing was changed."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.message = str(message)
        if code:
            self.code = code
        self.fields = dict(fields or {})

    def __str__(self) -> str:
        return self.message


class ValidationFailed(DomainError):
    """Input that does not validate; ``fields`` maps each field to its message."""

    code = "validation_failed"


class InvalidTransition(DomainError):
    """A state change the object's current state does not allow."""

    code = "invalid_state"


class NotAllowed(DomainError):
    """A rule refuses the action (e.g. closing an agreement while an order is open)."""

    code = "not_allowed"


class InsufficientCredit(DomainError):
    """The consumer's available limit does not cover the hold."""

    code = "insufficient_limit"
