"""The unread-notification count for the consumer portal's navigation (one indexed query, only when shown)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .selectors import unread_count, unread_latest


def unread_notifications(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: pages that do not show the badge do not pay for the count.
    return {
        "unread_notifications": SimpleLazyObject(lambda: unread_count(user=user)),
        "unread_reminders": SimpleLazyObject(lambda: unread_latest(user=user)),
    }
