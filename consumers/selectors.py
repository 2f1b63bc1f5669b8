"""Reads of the consumers app, each scoped to the principal it is asked for.

A consumer's own data is always reached through their ``Consumer`` row (which the
caller got from ``consumer_get_for_user``), never through an id from the request,
so one consumer can never read another's profile, limit history or records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from .models import Consumer, CreditProfile, LimitChange, PromiseRecord

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


def consumer_get_for_user(*, user: AbstractBaseUser | AnonymousUser) -> Consumer:
    """The consumer signed in as ``user``, with their credit profile.

    Raises ``Consumer.DoesNotExist`` for an anonymous user or a user who is not a
    consumer (a merchant's staff member, platform staff), so portal views can turn
    that into a redirect or a 404.
    """
    if not getattr(user, "is_authenticated", False):
        raise Consumer.DoesNotExist("an anonymous user is not a consumer")
    return Consumer.objects.select_related("credit_profile").get(user=user)


def credit_profile_for_consumer(*, consumer: Consumer) -> CreditProfile:
    """The consumer's credit profile (score, band, limit, exposure, available), read fresh from the database."""
    return CreditProfile.objects.get(consumer=consumer)


def promise_records_for_consumer(*, consumer: Consumer) -> QuerySet[PromiseRecord]:
    """The consumer's 守约记录, newest first, with the merchant loaded (for its display name)."""
    return PromiseRecord.objects.filter(consumer=consumer).select_related("merchant").order_by("-recorded_at", "-id")


def limit_changes_for_consumer(*, consumer: Consumer) -> QuerySet[LimitChange]:
    """The consumer's limit history, newest first (the model's default order is oldest first, for audits)."""
    return LimitChange.objects.filter(profile__consumer=consumer).order_by("-created_at", "-id")
