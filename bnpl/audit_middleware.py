"""Who and where for the audit trail: pghistory's middleware, without secrets from the URL (docs/security.md).

Writes of POST/PUT/PATCH/DELETE requests run in a ``pghistory.context`` holding the acting user's id and the
request path. Some paths carry bearer tokens (the hosted confirmation page ``/pay/confirm/<token>``, invitation
links): long token-like path segments are replaced by ``…`` before the path is stored.

**Once per transaction, not once per statement.** pghistory's own context prepends
``SELECT set_config('pghistory.context_id', …, true), set_config('pghistory.context_metadata', …, true);``
to every statement that is not a read, the savepoints and the untracked writes (rate window, idempotency
record, outbox) included: on ``POST /api/v1/orders`` that was a dozen extra statements per request. The
settings are transaction-local (``true``), so within one transaction setting them once is enough: the
triggers of every later write in it read the same values. :func:`_inject_once_per_transaction` therefore
injects before the first write of each transaction (every statement in autocommit, where each is its own
transaction) and again only when the metadata changed (DRF sets the user after the middleware ran) or a
``ROLLBACK TO SAVEPOINT`` may have undone the settings. It reuses pghistory's own injection, so the SQL the
triggers see is unchanged.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg.pq
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.wsgi import WSGIRequest
from django.db import connection
from pghistory import config
from pghistory import middleware as pghistory_middleware
from pghistory import runtime as pghistory_runtime

# A path segment of 20+ URL-safe characters that is not only digits or a word with hyphens: a token.
_TOKEN_SEGMENT = re.compile(r"(?<=/)(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{20,}(?=/|$)")
_IDLE = psycopg.pq.TransactionStatus.IDLE


def redact_path(path: str) -> str:
    return _TOKEN_SEGMENT.sub("…", path)


class _InjectOncePerTransaction:
    """An execute wrapper: pghistory's context injection, skipped when this transaction already has it.

    ``injected`` is the metadata last set in the open transaction (``None``: not set, or possibly undone).
    """

    def __init__(self) -> None:
        self.injected: dict[str, Any] | None = None

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
        cursor = context["cursor"]
        if cursor.connection.info.transaction_status == _IDLE:
            self.injected = None  # no transaction open: whatever was set is gone with the last one
        text = sql.decode() if isinstance(sql, bytes) else sql
        if text[:30].lstrip().lower().startswith("rollback to savepoint"):
            self.injected = None  # the settings may have been made inside the savepoint just undone
            return execute(sql, params, many, context)
        if not pghistory_runtime._can_inject_variable(cursor, text):  # reads, DDL, an errored transaction
            return execute(sql, params, many, context)
        metadata = pghistory_runtime._tracker.value.metadata
        if self.injected is not None and self.injected == metadata:
            return execute(sql, params, many, context)
        result = pghistory_runtime._inject_history_context(execute, sql, params, many, context)
        self.injected = dict(metadata)
        return result


class AuditContext:
    """``pghistory.context`` with :class:`_InjectOncePerTransaction` as its statement hook.

    Nested ``pghistory.context(...)`` calls (DRF setting ``request.user``, services adding metadata)
    find this context in pghistory's tracker and add to its metadata, exactly as with pghistory's own.
    """

    def __init__(self, **metadata: Any):
        self.metadata = metadata
        self._hook: Any = None

    def __enter__(self) -> Any:
        tracker = pghistory_runtime._tracker
        if hasattr(tracker, "value"):  # inside another context: join it
            tracker.value.metadata.update(**self.metadata)
            return tracker.value
        self._hook = connection.execute_wrapper(_InjectOncePerTransaction())
        self._hook.__enter__()
        tracker.value = pghistory_runtime.Context(id=uuid.uuid4(), metadata=self.metadata)
        return tracker.value

    def __exit__(self, *exc: Any) -> None:
        if self._hook is not None:
            delattr(pghistory_runtime._tracker, "value")
            self._hook.__exit__(*exc)
            self._hook = None


class AuditContextMiddleware(pghistory_middleware.HistoryMiddleware):
    def get_context(self, request) -> dict[str, Any]:
        context = super().get_context(request)
        context["url"] = redact_path(context["url"])
        return context

    def __call__(self, request):
        if request.method not in config.middleware_methods():
            return self.get_response(request)
        with AuditContext(**self.get_context(request)):
            # As pghistory's middleware: a request class that puts the user into the context when DRF sets it.
            if isinstance(request, WSGIRequest):
                request.__class__ = pghistory_middleware.WSGIRequest
            elif isinstance(request, ASGIRequest):
                request.__class__ = pghistory_middleware.ASGIRequest
            return self.get_response(request)
