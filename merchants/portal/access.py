"""Who may see and do what in the merchant portal.

A signed-in user reaches the portal through a ``MerchantMember`` row; ``member_required(capability)``
resolves it (the merchant chosen in the session when the user belongs to several), puts it on the request
as ``request.member`` and ``request.merchant``, and answers 403 with a page that says which role is
needed when the member's role lacks the capability. Data is always read through ``request.merchant``,
so another merchant's ids are a 404 (the views' lookups are scoped), never a 403 that confirms they exist.

The role matrix is the issue's: owner does everything; finance sees the money pages and refunds;
operator runs listings and orders; viewer reads everything and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from ..choices import MemberRole
from ..models import MerchantMember

SESSION_MERCHANT_KEY = "merchant_portal_merchant_id"


class Capability(enum.StrEnum):
    """A thing a member may see or do; each portal view names exactly one."""

    VIEW = "view"  # dashboard, orders, listings, disputes (read)
    VIEW_MONEY = "view_money"  # settlements, statements, fee terms
    MANAGE_LISTINGS = "manage_listings"  # create, edit, pause, import listings
    MANAGE_ORDERS = "manage_orders"  # complete, lower, cancel, collect again, mark paid elsewhere, export
    REFUND = "refund"  # refund a charged order
    RESPOND_DISPUTES = "respond_disputes"  # answer a dispute with text and evidence
    MANAGE_CAMPAIGNS = "manage_campaigns"  # promise-keeping campaigns the merchant funds
    MANAGE_DEVELOPER = "manage_developer"  # API keys and webhook endpoints
    MANAGE_TEAM = "manage_team"  # invite, change roles, remove members
    MANAGE_ACCOUNT = "manage_account"  # company details, bank account, submit for review


_ALL = frozenset(MemberRole)
CAPABILITY_ROLES: dict[Capability, frozenset[str]] = {
    Capability.VIEW: _ALL,
    Capability.VIEW_MONEY: frozenset({MemberRole.OWNER, MemberRole.FINANCE, MemberRole.VIEWER}),
    Capability.MANAGE_LISTINGS: frozenset({MemberRole.OWNER, MemberRole.OPERATOR}),
    Capability.MANAGE_ORDERS: frozenset({MemberRole.OWNER, MemberRole.OPERATOR}),
    Capability.REFUND: frozenset({MemberRole.OWNER, MemberRole.FINANCE}),
    Capability.RESPOND_DISPUTES: frozenset({MemberRole.OWNER, MemberRole.OPERATOR, MemberRole.FINANCE}),
    Capability.MANAGE_CAMPAIGNS: frozenset({MemberRole.OWNER, MemberRole.FINANCE}),
    Capability.MANAGE_DEVELOPER: frozenset({MemberRole.OWNER}),
    Capability.MANAGE_TEAM: frozenset({MemberRole.OWNER}),
    Capability.MANAGE_ACCOUNT: frozenset({MemberRole.OWNER}),
}


def member_can(member: MerchantMember, capability: Capability) -> bool:
    """Whether ``member``'s role carries ``capability`` (templates use it to hide buttons)."""
    return member.role in CAPABILITY_ROLES[capability]


def memberships_for(user: Any) -> list[MerchantMember]:
    """The user's memberships, merchants loaded, oldest first (the default merchant is the first)."""
    if not user.is_authenticated:
        return []
    return list(MerchantMember.objects.filter(user=user).select_related("merchant").order_by("created_at", "pk"))


def current_membership(request: HttpRequest) -> MerchantMember | None:
    """The membership the portal acts as: the one chosen in the session, else the user's first."""
    memberships = memberships_for(request.user)
    chosen = request.session.get(SESSION_MERCHANT_KEY)
    for member in memberships:
        if member.merchant_id == chosen:
            return member
    return memberships[0] if memberships else None


def member_required(capability: Capability) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Guard a portal view: signed in, a member of a merchant, and a role with ``capability``.

    Anonymous → the merchant log-in page and back; signed in but no membership → the onboarding start
    (``merchant:no_merchant``); wrong role → 403 page naming the capability's roles.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("merchant:login"))
            member = current_membership(request)
            if member is None:
                return render(request, "merchants/no_merchant.html", status=403)
            request.member = member  # type: ignore[attr-defined]
            request.merchant = member.merchant  # type: ignore[attr-defined]
            if not member_can(member, capability):
                allowed = [MemberRole(role).label for role in MemberRole if role in CAPABILITY_ROLES[capability]]
                return render(
                    request,
                    "merchants/forbidden.html",
                    {"allowed_roles": allowed, "member": member},
                    status=403,
                )
            return view(request, *args, **kwargs)

        wrapper.capability = capability  # type: ignore[attr-defined]  # read by the authorisation matrix test
        return wrapper

    return decorator
