"""Reads of the merchants app, scoped to the principal asking.

Anything looked up from request input goes through a function here: a merchant is found only
among the user's memberships and a listing only under its merchant, so another tenant's id
raises ``DoesNotExist`` (a 404 for views) rather than leaking the row.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils.crypto import constant_time_compare

from .choices import ListingStatus, MemberRole, MerchantStatus
from .models import ApiKey, Listing, Merchant, MerchantMember
from .services import API_KEY_PATTERN, api_key_hash


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
    """One of the merchant's listings; ``Listing.DoesNotExist`` for another merchant's listing."""
    pk = _pk(listing_id)
    if pk is None:
        raise Listing.DoesNotExist
    return listings_for_merchant(merchant=merchant).get(pk=pk)


def listings_active() -> QuerySet[Listing]:
    """What consumers can order now: active listings of approved merchants, with the merchant loaded."""
    return (
        Listing.objects.filter(status=ListingStatus.ACTIVE, merchant__status=MerchantStatus.APPROVED)
        .select_related("merchant")
        .order_by("merchant_id", "title", "id")
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
    key = ApiKey.objects.select_related("merchant").filter(prefix=f"sk_{mode}_{public_id}").first()
    if key is None:
        return None
    for secret_key in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]:
        if constant_time_compare(key.secret_hash, api_key_hash(token, secret_key=secret_key)):
            return key
    return None
