"""One error format for the whole API: ``{"error": {"code", "message", "fields"}}`` with stable codes.

Every refusal, whatever raised it (a service's :class:`~bnpl.exceptions.DomainError`, DRF's
validation, authentication, throttling, a missing row), leaves through :func:`exception_handler`,
so a merchant's integration handles one shape. ``code`` is stable and documented (docs/api.md);
``message`` is for people and may be reworded or translated; ``fields`` maps a request field
(``lines[0].amount``) to what is wrong with it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response

from bnpl.exceptions import DomainError, InsufficientCredit, InvalidTransition, NotAllowed, ValidationFailed

#: HTTP status for domain error codes that do not follow their class's default.
STATUS_BY_CODE: dict[str, int] = {
    "order_not_found": status.HTTP_404_NOT_FOUND,
    "duplicate_out_order_no": status.HTTP_409_CONFLICT,
    "duplicate_out_agreement_no": status.HTTP_409_CONFLICT,
    "duplicate_event_conflict": status.HTTP_409_CONFLICT,
    "idempotency_in_progress": status.HTTP_409_CONFLICT,
    "idempotency_key_reused": status.HTTP_422_UNPROCESSABLE_ENTITY,
    "livemode_mismatch": status.HTTP_403_FORBIDDEN,
    "livemode_required": status.HTTP_403_FORBIDDEN,
}
#: HTTP status by domain error class (the first that matches).
STATUS_BY_CLASS: tuple[tuple[type[DomainError], int], ...] = (
    (ValidationFailed, status.HTTP_400_BAD_REQUEST),
    (InvalidTransition, status.HTTP_409_CONFLICT),
    (InsufficientCredit, status.HTTP_409_CONFLICT),
    (NotAllowed, status.HTTP_409_CONFLICT),
    (DomainError, status.HTTP_400_BAD_REQUEST),
)


class ApiError(exceptions.APIException):
    """An API-level refusal with an explicit code (a missing Idempotency-Key, an unknown field, …)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        fields: dict[str, str] | None = None,
    ):
        super().__init__(detail=message, code=code or self.default_code)
        self.code = code or self.default_code
        self.message = str(message)
        self.fields = dict(fields or {})
        if status_code is not None:
            self.status_code = status_code


class UnknownField(ApiError):
    default_code = "unknown_field"


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": str(message), "fields": {k: str(v) for k, v in (fields or {}).items()}}}


def flatten(detail: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested error detail as ``{"lines[0].amount": "…"}`` (the services' own key style)."""
    out: dict[str, str] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # DRF keys a list field's errors by the item's index
                out.update(flatten(value, f"{prefix}[{key}]"))
                continue
            name = str(key)
            if name == "non_field_errors":
                name = ""
            out.update(flatten(value, f"{prefix}.{name}" if prefix and name else (name or prefix)))
    elif isinstance(detail, list):
        if detail and all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "request"] = " ".join(str(item) for item in detail)
        else:
            for index, value in enumerate(detail):
                if value:
                    out.update(flatten(value, f"{prefix}[{index}]"))
    else:
        out[prefix or "request"] = str(detail)
    return out


def domain_status(exc: DomainError) -> int:
    if exc.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[exc.code]
    for cls, code in STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return code
    return status.HTTP_400_BAD_REQUEST


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: every known refusal as the one error format; others stay 500s."""
    headers: dict[str, str] = {}
    if isinstance(exc, DomainError):
        body = error_body(exc.code, exc.message, exc.fields)
        reasons = getattr(exc, "reasons", None)
        if reasons:
            body["error"]["reasons"] = reasons
        return Response(body, status=domain_status(exc))
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        return Response(error_body("not_found", _("Not found.")), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.fields)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body("validation_failed", _("The request has errors."), flatten(exc.detail))
    elif isinstance(exc, exceptions.ParseError):
        body = error_body("malformed_json", _("The request body is not valid JSON."))
    elif isinstance(exc, exceptions.NotAuthenticated):
        body = error_body("authentication_required", _("Send your API key as Authorization: Bearer <key>."))
    elif isinstance(exc, exceptions.AuthenticationFailed):
        codes = exc.get_codes()
        body = error_body(codes if isinstance(codes, str) else "invalid_api_key", str(exc.detail))
    elif isinstance(exc, exceptions.Throttled):
        wait = max(1, int(exc.wait or 1))
        headers["Retry-After"] = str(wait)
        body = error_body("rate_limited", _("Too many requests; retry after %(s)d second(s).") % {"s": wait})
    elif isinstance(exc, exceptions.MethodNotAllowed):
        body = error_body("method_not_allowed", str(exc.detail))
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        body = error_body("unsupported_media_type", _("Send the body as application/json."))
    elif isinstance(exc, exceptions.NotAcceptable):
        body = error_body("not_acceptable", _("This API answers in application/json only."))
    elif isinstance(exc, exceptions.PermissionDenied):
        body = error_body("permission_denied", str(exc.detail))
    elif isinstance(exc, exceptions.NotFound):
        body = error_body("not_found", _("Not found."))
    else:
        codes = exc.get_codes()
        body = error_body(codes if isinstance(codes, str) else "invalid_request", str(exc.detail))
    return Response(body, status=exc.status_code, headers=headers)
