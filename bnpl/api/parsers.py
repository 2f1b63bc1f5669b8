"""The API's JSON parser: plain JSON, minus the text PostgreSQL cannot store.

JSON may carry ``\\u0000`` and lone surrogates (``\\ud800``); neither fits a PostgreSQL text or
jsonb value, so they would surface as a server error deep in a service. They are refused here,
up front, as a 400 ``validation_failed``.
"""

from __future__ import annotations

import hashlib
from io import BytesIO
from typing import Any

from django.utils.translation import gettext as _
from rest_framework.parsers import JSONParser

from .errors import ApiError


def _bad_text(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(item) for item in value)
    return False


class StrictJSONParser(JSONParser):
    """JSON, refusing NUL and lone surrogates; keeps the body's SHA-256 for the idempotency fingerprint."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        request = (parser_context or {}).get("request")
        if request is not None:
            request.body_sha256 = hashlib.sha256(raw).hexdigest()
        data = super().parse(BytesIO(raw), media_type, parser_context)
        # Only a \u escape can produce a NUL or a lone surrogate: skip the walk for the usual body.
        if b"\\u" in raw and _bad_text(data):
            raise ApiError(_("Text must not contain NUL characters or unpaired surrogates."), code="validation_failed")
        return data
