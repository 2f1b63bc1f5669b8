"""``Idempotency-Key`` on every POST: one effect per key, the stored response replayed after that.

The flow of one POST (docs/api.md, "Idempotency", explains it to merchants):

1. The key is **claimed** in its own committed statement (``in_progress``, with a 60-second lease),
   so that a second request with the same key sees the claim at once and gets 409 instead of
   running the effect again. The same key with another method, path, key mode or body gets 422.
2. The handler runs. Where its service is not durable (usage, sign-up links, listing creation)
   the handler and the stored response run in **one transaction**: the effect and its recorded
   response commit together or not at all. Where the service owns a durable transaction (order
   creation and transitions, agreement close, listing pause/resume) the response is stored right
   after the effect committed.
3. Every response below 500 is stored and replayed verbatim for the same key and body (with
   ``Idempotent-Replayed: true``). An unexpected error (500) releases the claim, so a retry runs
   the request again.

Crash semantics: a process that dies after claiming but before storing leaves an ``in_progress``
record; its lease expires after 60 s and the next retry takes it over and runs the request again.
For the one-transaction endpoints that is exact (the effect died with the process). For the durable
ones the effect may have committed: the rerun then meets the services' own idempotency (the order
number is taken, the state has moved on, the usage event id is known) and answers accordingly.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from merchants.services import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
)

from .errors import ApiError

HEADER = "HTTP_IDEMPOTENCY_KEY"
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(request: Request) -> str:
    """What must match for a replay: method, path, key mode and the body, byte for byte (SHA-256).

    The parser hashes the raw body as it reads it, so the fingerprint costs nothing extra for a
    1,000-event batch; a request without a body hashes as empty.
    """
    request.data  # noqa: B018 - parse first: the parser records the body's digest
    body = getattr(request, "body_sha256", None) or hashlib.sha256(b"").hexdigest()
    mode = getattr(request.auth, "mode", "")
    material = f"{request.method}\n{request.path}\n{mode}\n{body}"
    return hashlib.sha256(material.encode()).hexdigest()


def _key(request: Request) -> str:
    key = request.META.get(HEADER, "").strip()
    if not key:
        raise ApiError(
            _("Send an Idempotency-Key header with every POST (a UUID you generate per request)."),
            code="idempotency_key_missing",
        )
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise ApiError(
            _("The Idempotency-Key must be 1 to %(n)d printable ASCII characters.") % {"n": IDEMPOTENCY_KEY_MAX_LENGTH},
            code="idempotency_key_invalid",
        )
    return key


def _render(response: Response) -> str:
    return JSONRenderer().render(response.data).decode() if response.data is not None else ""


def idempotent(*, atomic: bool) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Make a POST handler idempotent; ``atomic`` runs handler and stored response in one transaction.

    Use ``atomic=True`` only when the handler's services do not open a durable transaction.
    """

    def decorate(handler: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(handler)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            key = _key(request)
            claim = idempotency_claim(merchant=request.user.merchant, key=key, fingerprint=fingerprint(request))
            record = claim.record
            if claim.replay:
                data = json.loads(record.response_body) if record.response_body else None
                return Response(data, status=record.response_status, headers={REPLAYED_HEADER: "true"})

            def run() -> Response:
                try:
                    return handler(view, request, *args, **kwargs)
                except Exception as exc:
                    # Turn known refusals into their response here, so that they are stored too;
                    # anything else propagates as a 500 (and releases the claim below).
                    return view.handle_exception(exc)

            try:
                if atomic:
                    with transaction.atomic():
                        response = run()
                        idempotency_complete(record=record, status=response.status_code, body=_render(response))
                else:
                    response = run()
                    idempotency_complete(record=record, status=response.status_code, body=_render(response))
            except BaseException:
                idempotency_release(record=record)
                raise
            return response

        return wrapper

    return decorate
