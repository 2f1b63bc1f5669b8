"""Reads of the notifications app, scoped to the person reading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from .kinds import CONSUMER_KINDS, KindSpec
from .models import OUTBOUND_CHANNELS, Notification, NotificationPreference, RecipientSettings

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def inbox(*, user: AbstractBaseUser) -> QuerySet[Notification]:
    """The person's notifications, newest first (their own only)."""
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")


def unread_count(*, user: AbstractBaseUser) -> int:
    """How many of the person's notifications are unread (one indexed count)."""
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def unread_latest(*, user: AbstractBaseUser, limit: int = 3) -> list[Notification]:
    """The newest unread notifications, for the "unread reminders" block of /me/."""
    return list(inbox(user=user).filter(read_at__isnull=True)[:limit])


@dataclass(frozen=True)
class PreferenceRow:
    spec: KindSpec
    channels: dict[str, bool]  # channel → on


def preference_rows(*, user: AbstractBaseUser) -> list[PreferenceRow]:
    """Every consumer kind with the person's choice per outbound channel (mandatory kinds always on)."""
    off = set(NotificationPreference.objects.filter(user=user, enabled=False).values_list("kind", "channel"))
    return [
        PreferenceRow(
            spec=spec,
            channels={channel: spec.mandatory or (spec.key, channel) not in off for channel in OUTBOUND_CHANNELS},
        )
        for spec in CONSUMER_KINDS
    ]


def recipient_settings(*, user: AbstractBaseUser) -> RecipientSettings | None:
    return RecipientSettings.objects.filter(user=user).first()
