"""The team: members and their roles, invitations by e-mail or mobile number, and the activity log.

Every member sees who is on the team; only an owner (``Capability.MANAGE_TEAM``) invites, changes roles,
removes members and reads the activity log. The last owner can neither be demoted nor removed (the member
services refuse it). An invitation is a link with a random token, shown once to the owner who passes it on
(the platform sends no SMS or e-mail itself yet); whoever opens it signs in, or creates a login on the spot,
and joins with the invited role, provided the account is the invited one (``invitation_accept`` checks it):
the account's e-mail for an e-mail invitation, the number a new login is created with for a mobile one. The
join page shows only the masked contact. Each change is written to the activity log in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.exceptions import DomainError
from bnpl.validators import mask_phone

from ..activity import action_label, activity_record
from ..choices import InvitationStatus, MemberRole
from ..forms import add_domain_errors
from ..models import MerchantInvitation, MerchantMember
from ..selectors import (
    activities_for_merchant,
    activity_actions_for_merchant,
    invitation_get_by_token,
    invitation_get_for_merchant,
    invitations_pending_for_merchant,
    member_get_for_merchant,
    members_for_merchant,
)
from ..services import (
    invitation_accept,
    invitation_create,
    invitation_revoke,
    member_change_role,
    member_remove,
    merchant_applicant_register,
)
from .access import SESSION_MERCHANT_KEY, Capability, member_can, member_required
from .onboarding import MODEL_BACKEND, SignupForm, signup_rate_exceeded

ACTIVITY_PAGE_SIZE = 50


class InviteForm(forms.Form):
    """Who to invite (an e-mail address or a mainland mobile number) and with which role."""

    contact = forms.CharField(
        label=gettext_lazy("E-mail or mobile number"),
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "name@example.com / 138 0013 8000"}),
    )
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=MemberRole.choices, initial=MemberRole.OPERATOR)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=MemberRole.choices)


def _contact_label(invitation: MerchantInvitation) -> str:
    return invitation.email or mask_phone(invitation.phone)


def _team_context(request: HttpRequest, invite_form: InviteForm | None = None) -> dict[str, Any]:
    merchant = request.merchant  # type: ignore[attr-defined]
    manage = member_can(request.member, Capability.MANAGE_TEAM)  # type: ignore[attr-defined]
    return {
        "members": list(members_for_merchant(merchant=merchant)),
        "invitations": list(invitations_pending_for_merchant(merchant=merchant)) if manage else [],
        "invite_form": invite_form or InviteForm(),
        "roles": MemberRole.choices,
        "manage": manage,
        "now": timezone.now(),
    }


@member_required(Capability.VIEW)
@require_GET
def team_view(request: HttpRequest) -> HttpResponse:
    """The team: every member with their role; for owners, pending invitations and the invite form."""
    return render(request, "merchants/team.html", _team_context(request))


@member_required(Capability.MANAGE_TEAM)
@require_POST
@never_cache
def team_invite_view(request: HttpRequest) -> HttpResponse:
    """Create an invitation and show its link once; a refused one comes back with the typed values."""
    form = InviteForm(request.POST)
    if form.is_valid():
        contact = form.cleaned_data["contact"].strip()
        by_email = "@" in contact
        try:
            with transaction.atomic():
                invitation, token = invitation_create(
                    actor=request.user,
                    merchant=request.merchant,  # type: ignore[attr-defined]
                    role=form.cleaned_data["role"],
                    email=contact if by_email else "",
                    phone="" if by_email else contact,
                )
                activity_record(
                    merchant=request.merchant,  # type: ignore[attr-defined]
                    member=request.member,  # type: ignore[attr-defined]
                    action="team.invite",
                    target=_contact_label(invitation),
                    detail={"role": invitation.role, "invitation": invitation.pk},
                )
        except DomainError as exc:
            for message in exc.fields.values() or [exc.message]:
                form.add_error("contact" if exc.fields else None, message)
        else:
            link = request.build_absolute_uri(reverse("merchant:join", args=[token]))
            return render(request, "merchants/team_invited.html", {"invitation": invitation, "link": link})
    return render(request, "merchants/team.html", _team_context(request, form), status=200)


@member_required(Capability.MANAGE_TEAM)
@require_POST
def team_invitation_revoke_view(request: HttpRequest, invitation_id: int) -> HttpResponse:
    try:
        invitation = invitation_get_for_merchant(merchant=request.merchant, invitation_id=invitation_id)  # type: ignore[attr-defined]
    except MerchantInvitation.DoesNotExist:
        raise Http404 from None
    try:
        with transaction.atomic():
            invitation_revoke(actor=request.user, invitation=invitation)
            activity_record(
                merchant=request.merchant,  # type: ignore[attr-defined]
                member=request.member,  # type: ignore[attr-defined]
                action="team.invite_revoke",
                target=_contact_label(invitation),
            )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The invitation was revoked; its link no longer works."))
    return redirect("merchant:team")


def _member(request: HttpRequest, member_id: int) -> MerchantMember:
    try:
        return member_get_for_merchant(merchant=request.merchant, member_id=member_id)  # type: ignore[attr-defined]
    except MerchantMember.DoesNotExist:
        raise Http404 from None


@member_required(Capability.MANAGE_TEAM)
@require_POST
def team_member_role_view(request: HttpRequest, member_id: int) -> HttpResponse:
    """Change a member's role (never the last owner's away from owner); htmx swaps the members table in place."""
    member = _member(request, member_id)
    form = RoleForm(request.POST)
    previous = member.role
    if not form.is_valid():
        level, text = messages.ERROR, _("Choose a valid role.")
    else:
        try:
            with transaction.atomic():
                changed = member_change_role(actor=request.user, member=member, role=form.cleaned_data["role"])
                if changed.role != previous:
                    activity_record(
                        merchant=request.merchant,  # type: ignore[attr-defined]
                        member=request.member,  # type: ignore[attr-defined]
                        action="team.role_change",
                        target=member.user.get_username(),
                        detail={"from": previous, "to": changed.role},
                    )
        except DomainError as exc:
            level, text = messages.ERROR, exc.message
        else:
            level = messages.SUCCESS
            text = _("%(user)s is now %(role)s.") % {
                "user": member.user.get_username(),
                "role": changed.get_role_display(),
            }
    if request.htmx and member_id != getattr(request.member, "pk", None):  # type: ignore[attr-defined]
        context = _team_context(request)
        context["notice"] = {"error": level == messages.ERROR, "text": text}
        return render(request, "merchants/team.html#members", context)
    # A full page after changing one's own role: what the page offers may have changed with it.
    messages.add_message(request, level, text)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("merchant:team")
        return response
    return redirect("merchant:team")


@member_required(Capability.MANAGE_TEAM)
@require_POST
def team_member_remove_view(request: HttpRequest, member_id: int) -> HttpResponse:
    """Take a member off the team (never the last owner)."""
    member = _member(request, member_id)
    try:
        with transaction.atomic():
            member_remove(actor=request.user, member=member)
            activity_record(
                merchant=request.merchant,  # type: ignore[attr-defined]
                member=request.member,  # type: ignore[attr-defined]
                action="team.remove",
                target=member.user.get_username(),
                detail={"role": member.role},
            )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("merchant:team")
    messages.success(request, _("%(user)s was removed from the team.") % {"user": member.user.get_username()})
    if member.user_id == request.user.pk:
        return redirect("merchant:no_merchant")
    return redirect("merchant:team")


@member_required(Capability.MANAGE_TEAM)
@require_GET
def activity_view(request: HttpRequest) -> HttpResponse:
    """Who did what, newest first, 50 a page; filter by member and by action (htmx re-renders the table)."""
    merchant = request.merchant  # type: ignore[attr-defined]
    user_filter = request.GET.get("user", "")
    action_filter = request.GET.get("action", "")
    rows = activities_for_merchant(merchant=merchant, user_id=user_filter, action=action_filter)
    page = Paginator(rows, ACTIVITY_PAGE_SIZE).get_page(request.GET.get("page"))
    entries = [{"row": row, "label": action_label(row.action)} for row in page.object_list]
    query = urlencode({key: value for key, value in (("user", user_filter), ("action", action_filter)) if value})
    context = {
        "page": page,
        "entries": entries,
        "members": list(members_for_merchant(merchant=merchant)),
        "actions": [(code, action_label(code)) for code in activity_actions_for_merchant(merchant=merchant)],
        "user_filter": user_filter,
        "action_filter": action_filter,
        "query": query,
    }
    template = "merchants/activity.html#results" if request.htmx else "merchants/activity.html"  # type: ignore[attr-defined]
    return render(request, template, context)


def _invitation_usable(invitation: MerchantInvitation) -> bool:
    return invitation.status == InvitationStatus.PENDING and invitation.expires_at > timezone.now()


@sensitive_post_parameters("password", "password_confirm")
@never_cache
@require_http_methods(["GET", "POST"])
def join_view(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation link: join the team as the invited role, signed in or with a new login made here."""
    try:
        invitation = invitation_get_by_token(token=token)
    except MerchantInvitation.DoesNotExist:
        raise Http404 from None
    if not _invitation_usable(invitation):
        return render(request, "merchants/join.html", {"invitation": invitation, "unusable": True}, status=410)
    signup_form = None
    if not request.user.is_authenticated:
        # Not prefilled: whoever holds the link sees only the masked contact; the invitee knows their own.
        signup_form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        user = request.user
        try:
            if signup_form is not None:
                if signup_rate_exceeded(request):
                    messages.error(request, _("Too many sign-up attempts from your network. Try again in an hour."))
                    return render(
                        request, "merchants/join.html", {"invitation": invitation, "form": signup_form}, status=429
                    )
                if not signup_form.is_valid():
                    raise _FormInvalid
                data = signup_form.cleaned_data
            with transaction.atomic():
                if signup_form is not None:
                    user = merchant_applicant_register(
                        actor=None,
                        username=data["username"],
                        email=data["email"],
                        phone=data["phone"],
                        password=data["password"],
                    )
                # A new login brings the mobile number it was created with; a signed-in account has none.
                phone = getattr(user, "applicant_phone", "") if signup_form is not None else ""
                member = invitation_accept(actor=user, invitation=invitation, phone=phone)
                activity_record(
                    merchant=invitation.merchant,
                    member=member,
                    action="team.join",
                    target=user.get_username(),
                    detail={"role": member.role},
                )
        except _FormInvalid:
            pass
        except DomainError as exc:
            if signup_form is not None and exc.fields:
                add_domain_errors(signup_form, exc)
            else:
                messages.error(request, exc.message)
        else:
            if signup_form is not None:
                login(request, user, backend=MODEL_BACKEND)
            request.session[SESSION_MERCHANT_KEY] = invitation.merchant_id
            messages.success(
                request,
                _("Welcome to %(merchant)s: you joined as %(role)s.")
                % {"merchant": invitation.merchant.display_name, "role": member.get_role_display()},
            )
            return redirect("merchant:dashboard")
    return render(request, "merchants/join.html", {"invitation": invitation, "form": signup_form})


class _FormInvalid(Exception):
    """The sign-up form on the invitation page has field errors (shown with the page)."""


urlpatterns = [
    path("team/", team_view, name="team"),
    path("team/invite/", team_invite_view, name="team_invite"),
    path("team/invitations/<int:invitation_id>/revoke/", team_invitation_revoke_view, name="team_invitation_revoke"),
    path("team/members/<int:member_id>/role/", team_member_role_view, name="team_member_role"),
    path("team/members/<int:member_id>/remove/", team_member_remove_view, name="team_member_remove"),
    path("team/activity/", activity_view, name="activity"),
    path("join/<str:token>/", join_view, name="join"),
]
