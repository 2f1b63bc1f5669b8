"""Reads of the merchants app, scoped to the principal asking.

Anything looked up from request input goes through a function here: a merchant is found only
among the user's memberships and a listing only under its merchant, so another tenant's id
raises ``DoesNotExist`` (a 404 for views) rather than leaking the row.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Case, F, IntegerField, QuerySet, Value, When
from django.utils.crypto import constant_time_compare

from bnpl import sql_rows

from .choices import InvitationStatus, ListingStatus, MemberRole, MerchantStatus
from .models import (
    ApiKey,
    Listing,
    Merchant,
    MerchantActivity,
    MerchantInvitation,
    MerchantMember,
    WebhookDelivery,
    WebhookEndpoint,
)
from .services import API_KEY_PATTERN, api_key_hash, invitation_token_hash


def _pk(value: object) -> int | None:
    """An id from user input, or None when it cannot be one (so the lookup simply finds nothing)."""
    try:
        pk = int(str(value))
    except (TypeError, ValueError):
        return None
    # Beyond a bigint is no id either (and would otherwise reach the database as an error).
    return pk if 0 < pk < 2**63 else None


def merchants_for_user(*, user: Any) -> QuerySet[Merchant]:
    """The merchants the user is a member of (any role), newest first."""
    if not getattr(user, "is_authenticated", False):
        return Merchant.objects.none()
    return Merchant.objects.filter(members__user=user)


def merchant_get_for_user(*, user: Any, merchant_id: object) -> Merchant:
    """One of the user's merchants; ``Merchant.DoesNotExist`` for any other id."""
    pk = _pk(merchant_id)
    if pk is None:
        raise Merchant.DoesNotExist
    return merchants_for_user(user=user).get(pk=pk)


def membership_for_user(*, user: Any, merchant: Merchant) -> MerchantMember | None:
    """The user's membership (with its role) at the merchant, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    return MerchantMember.objects.filter(merchant=merchant, user=user).first()


def members_for_merchant(*, merchant: Merchant) -> QuerySet[MerchantMember]:
    """The merchant's team in role order (owners first), with their users."""
    role_order = Case(
        *(When(role=role, then=Value(position)) for position, role in enumerate(MemberRole.values)),
        output_field=IntegerField(),
    )
    return (
        MerchantMember.objects.filter(merchant=merchant).select_related("user").order_by(role_order, "created_at", "id")
    )


def member_get_for_merchant(*, merchant: Merchant, member_id: object) -> MerchantMember:
    """One member of the merchant's team; ``MerchantMember.DoesNotExist`` for another merchant's member."""
    pk = _pk(member_id)
    if pk is None:
        raise MerchantMember.DoesNotExist
    return members_for_merchant(merchant=merchant).get(pk=pk)


def listings_for_merchant(*, merchant: Merchant) -> QuerySet[Listing]:
    """All the merchant's listings (on sale or paused), by title."""
    return Listing.objects.filter(merchant=merchant).order_by("title", "id")


def listing_get_for_merchant(*, merchant: Merchant, listing_id: object) -> Listing:
    """One of the merchant's listings; ``Listing.DoesNotExist`` for another merchant's listing.

    ``listing.merchant`` is the ``merchant`` given (no second read of the row the caller holds).
    """
    pk = _pk(listing_id)
    if pk is None:
        raise Listing.DoesNotExist
    with connection.cursor() as cursor:  # every API order names a listing (see ``bnpl.sql_rows``)
        cursor.execute(_listing_sql(), [pk, merchant.pk])
        row = cursor.fetchone()
    if row is None:
        raise Listing.DoesNotExist
    listing = sql_rows.instance(Listing, row)
    listing.merchant = merchant
    return listing


@functools.cache
def _listing_sql() -> str:
    meta = Listing._meta
    return (
        f'SELECT {sql_rows.columns(Listing, "l")} FROM "{meta.db_table}" l '  # noqa: S608
        f'WHERE l."{meta.pk.column}" = %s AND l."{meta.get_field("merchant").column}" = %s'
    )


def listings_active() -> QuerySet[Listing]:
    """What consumers can order now: active listings of approved merchants, with the merchant loaded."""
    return (
        Listing.objects.filter(status=ListingStatus.ACTIVE, merchant__status=MerchantStatus.APPROVED)
        .select_related("merchant")
        .order_by("merchant_id", "title", "id")
    )


@functools.cache
def _api_key_sql() -> str:
    """The key by its public prefix, with its merchant: every API request runs it (see ``bnpl.sql_rows``)."""
    key, merchant = ApiKey._meta, Merchant._meta
    prefix, merchant_id = key.get_field("prefix").column, key.get_field("merchant").column
    return (  # the prefix is unique: one row or none
        f"SELECT {sql_rows.columns(ApiKey, 'k')}, {sql_rows.columns(Merchant, 'm')} "  # noqa: S608
        f'FROM "{key.db_table}" k JOIN "{merchant.db_table}" m ON m."{merchant.pk.column}" = k."{merchant_id}" '
        f'WHERE k."{prefix}" = %s'
    )


def api_key_get_by_token(*, token: str) -> ApiKey | None:
    """The active key a bearer token belongs to, with its merchant; None for anything else.

    The public part finds the row; the secret is checked by comparing keyed hashes in constant time
    (also against ``SECRET_KEY_FALLBACKS``, so rotating ``SECRET_KEY`` does not lock merchants out).
    A revoked key is found (so the caller can say so) — check ``is_active``.
    """
    match = API_KEY_PATTERN.match(token or "")
    if match is None:
        return None
    mode, public_id, _secret = match.groups()
    with connection.cursor() as cursor:
        cursor.execute(_api_key_sql(), [f"sk_{mode}_{public_id}"])
        row = cursor.fetchone()
    if row is None:
        return None
    key = sql_rows.instance(ApiKey, row[: sql_rows.width(ApiKey)])
    key.merchant = sql_rows.instance(Merchant, row[sql_rows.width(ApiKey) :])
    for secret_key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        if constant_time_compare(key.secret_hash, api_key_hash(token, secret_key=secret_key)):
            return key
    return None


# --------------------------------------------------------------------------- portal: team, activity, developer


def invitations_pending_for_merchant(*, merchant: Merchant) -> QuerySet[MerchantInvitation]:
    """The merchant's pending invitations (expired ones included, marked by ``expires_at``), newest first."""
    return (
        MerchantInvitation.objects.filter(merchant=merchant, status=InvitationStatus.PENDING)
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


def invitation_get_for_merchant(*, merchant: Merchant, invitation_id: object) -> MerchantInvitation:
    """One of the merchant's invitations; ``MerchantInvitation.DoesNotExist`` for another merchant's."""
    pk = _pk(invitation_id)
    if pk is None:
        raise MerchantInvitation.DoesNotExist
    return MerchantInvitation.objects.get(merchant=merchant, pk=pk)


def invitation_get_by_token(*, token: str) -> MerchantInvitation:
    """The invitation a link's token belongs to (any status), with its merchant; ``DoesNotExist`` otherwise."""
    if not token or len(token) > 100:
        raise MerchantInvitation.DoesNotExist
    return MerchantInvitation.objects.select_related("merchant").get(token_hash=invitation_token_hash(token))


def activities_for_merchant(
    *, merchant: Merchant, user_id: object = None, action: str = ""
) -> QuerySet[MerchantActivity]:
    """The merchant's activity log, newest first, optionally of one user and/or one action (or family)."""
    rows = MerchantActivity.objects.filter(merchant=merchant).select_related("user")
    pk = _pk(user_id) if user_id not in (None, "") else None
    if pk is not None:
        rows = rows.filter(user_id=pk)
    if action:
        rows = rows.filter(action__startswith=action[:-1]) if action.endswith(".*") else rows.filter(action=action)
    return rows.order_by("-created_at", "-id")


def activity_actions_for_merchant(*, merchant: Merchant) -> list[str]:
    """The distinct actions in the merchant's log (for the filter's choices)."""
    return list(
        MerchantActivity.objects.filter(merchant=merchant)
        .order_by("action")
        .values_list("action", flat=True)
        .distinct()
    )


def api_keys_for_merchant(*, merchant: Merchant) -> QuerySet[ApiKey]:
    """The merchant's API keys, active first, newest first, with who created and revoked them."""
    return (
        ApiKey.objects.filter(merchant=merchant)
        .select_related("created_by", "revoked_by")
        .order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-id")
    )


def api_key_get_for_merchant(*, merchant: Merchant, api_key_id: object) -> ApiKey:
    """One of the merchant's API keys; ``ApiKey.DoesNotExist`` for another merchant's key."""
    pk = _pk(api_key_id)
    if pk is None:
        raise ApiKey.DoesNotExist
    return ApiKey.objects.get(merchant=merchant, pk=pk)


def webhook_endpoints_for_merchant(*, merchant: Merchant) -> QuerySet[WebhookEndpoint]:
    """The merchant's webhook endpoints, oldest first."""
    return WebhookEndpoint.objects.filter(merchant=merchant).order_by("id")


def webhook_endpoint_get_for_merchant(*, merchant: Merchant, endpoint_id: object) -> WebhookEndpoint:
    """One of the merchant's endpoints; ``WebhookEndpoint.DoesNotExist`` for another merchant's."""
    pk = _pk(endpoint_id)
    if pk is None:
        raise WebhookEndpoint.DoesNotExist
    return WebhookEndpoint.objects.get(merchant=merchant, pk=pk)


def webhook_deliveries_for_endpoint(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's delivery log, newest first, with the event and every HTTP attempt loaded."""
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-id")
    )


def webhook_delivery_get_for_merchant(*, merchant: Merchant, delivery_id: object) -> WebhookDelivery:
    """One delivery to one of the merchant's endpoints; ``WebhookDelivery.DoesNotExist`` otherwise."""
    pk = _pk(delivery_id)
    if pk is None:
        raise WebhookDelivery.DoesNotExist
    return WebhookDelivery.objects.select_related("endpoint").get(endpoint__merchant=merchant, pk=pk)
