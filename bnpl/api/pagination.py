"""Cursor (keyset) pagination for the API's lists, newest first.

A cursor is an opaque token naming the last row of the previous page (its time and id); the next
page is ``WHERE (time, id) < (cursor)``, answered from an index whatever the depth, and rows
inserted meanwhile never shift a page (unlike offsets). One query per page: it fetches
``limit + 1`` rows to know whether there is more.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import Model, Q, QuerySet
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from .errors import ApiError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description=f"Page size, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="`next_cursor` of the previous page."),
]


def _encode(moment: datetime, pk: int) -> str:
    raw = json.dumps([moment.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, pk = json.loads(raw)
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None or not isinstance(pk, int) or isinstance(pk, bool) or not 0 < pk < 2**63:
            raise ValueError(cursor)
        return parsed, pk
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        message = _("This cursor is not valid; use next_cursor from the previous page.")
        raise ApiError(message, code="invalid_cursor", fields={"cursor": message}) from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        message = _("Give a whole number from 1 to %(n)d.") % {"n": MAX_LIMIT}
        raise ApiError(message, code="validation_failed", fields={"limit": message})
    return limit


def paginate(request: Request, queryset: QuerySet, *, time_field: str = "created_at") -> tuple[Sequence[Model], Any]:
    """One page of ``queryset`` newest first by ``(time_field, id)``; returns the rows and the next cursor."""
    limit = _limit(request)
    cursor = request.query_params.get("cursor")
    queryset = queryset.order_by(f"-{time_field}", "-pk")
    if cursor:
        moment, pk = _decode(cursor)
        queryset = queryset.filter(Q(**{f"{time_field}__lt": moment}) | Q(**{time_field: moment, "pk__lt": pk}))
    rows = list(queryset[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode(getattr(rows[-1], time_field), rows[-1].pk) if has_more else None
    return rows, next_cursor


def page_body(data: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"data": data, "has_more": next_cursor is not None, "next_cursor": next_cursor}
