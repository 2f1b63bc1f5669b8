"""Who and where for the audit trail: pghistory's middleware, without secrets from the URL (docs/security.md).

Writes of POST/PUT/PATCH/DELETE requests run in a ``pghistory.context`` holding the acting user's id and the
request path. Some paths carry bearer tokens (the hosted confirmation page ``/pay/confirm/<token>``, invitation
links): long token-like path segments are replaced by ``…`` before the path is stored.
"""

from __future__ import annotations

import re
from typing import Any

from pghistory.middleware import HistoryMiddleware

# A path segment of 20+ URL-safe characters that is not only digits or a word with hyphens: a token.
_TOKEN_SEGMENT = re.compile(r"(?<=/)(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{20,}(?=/|$)")


def redact_path(path: str) -> str:
    return _TOKEN_SEGMENT.sub("…", path)


class AuditContextMiddleware(HistoryMiddleware):
    def get_context(self, request) -> dict[str, Any]:
        context = super().get_context(request)
        context["url"] = redact_path(context["url"])
        return context
