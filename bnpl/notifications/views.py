"""Consumer pages under /me/: the inbox (list, mark read) and the notification preferences.

Routed by ``bnpl/portal/urls_me.py``; guarded by ``consumer_required``; every read and write is scoped to
``request.user``, so another person's notification is invisible and cannot be marked read.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.exceptions import DomainError
from consumers.forms import add_domain_error
from consumers.views import consumer_required

from .kinds import CONSUMER, CONSUMER_KINDS
from .models import OUTBOUND_CHANNELS, Channel
from .selectors import inbox as inbox_selector
from .selectors import preference_rows, recipient_settings
from .services import notification_mark_read, notification_preferences_set

INBOX_PAGE_SIZE = 20


@consumer_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """The consumer's notifications, newest first, in the page's language; unread ones highlighted."""
    page = Paginator(inbox_selector(user=request.user), INBOX_PAGE_SIZE).get_page(request.GET.get("page"))
    language = translation.get_language()
    items = [(n, n.text_for(language)) for n in page.object_list]
    return render(request, "consumers/notifications_inbox.html", {"page": page, "items": items})


@consumer_required
@require_POST
def inbox_mark_read(request: HttpRequest, notification_id: int | None = None) -> HttpResponse:
    """Mark one notification read (or all, without an id); someone else's id changes nothing."""
    notification_mark_read(actor=request.user, user=request.user, notification_id=notification_id)
    if notification_id is None:
        messages.success(request, _("All notifications are marked read."))
    return redirect("me:inbox")


def _field_name(key: str, channel: str) -> str:
    return f"{key}__{channel}"


class PreferencesForm(forms.Form):
    """One checkbox per optional kind and channel, plus the message language and an email address."""

    language = forms.ChoiceField(label=gettext_lazy("Language of messages"), choices=settings.LANGUAGES)
    email = forms.EmailField(label=gettext_lazy("Email for notices"), required=False)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        for spec in CONSUMER_KINDS:
            for channel in OUTBOUND_CHANNELS:
                self.fields[_field_name(spec.key, channel)] = forms.BooleanField(
                    required=False, disabled=spec.mandatory, initial=True
                )

    def choices(self) -> dict[tuple[str, str], bool]:
        return {
            (spec.key, channel): bool(self.cleaned_data.get(_field_name(spec.key, channel)))
            for spec in CONSUMER_KINDS
            if not spec.mandatory
            for channel in OUTBOUND_CHANNELS
        }


@consumer_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    """Which notices come by email and SMS; mandatory ones are shown locked on. The inbox always gets all."""
    current = recipient_settings(user=request.user)
    rows = preference_rows(user=request.user)
    initial = {
        "language": current.language if current else settings.LANGUAGE_CODE,
        "email": current.email if current else request.user.email,
        **{_field_name(row.spec.key, ch): on for row in rows for ch, on in row.channels.items()},
    }
    form = PreferencesForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            notification_preferences_set(
                actor=request.user,
                user=request.user,
                audience=CONSUMER,
                enabled=form.choices(),
                language=form.cleaned_data["language"],
                email=form.cleaned_data["email"],
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, _("Your notification preferences are saved."))
            return redirect("me:notification_preferences")
    table = [
        {
            "spec": row.spec,
            "cells": [(Channel(ch).label, form[_field_name(row.spec.key, ch)]) for ch in OUTBOUND_CHANNELS],
        }
        for row in rows
    ]
    return render(
        request,
        "consumers/notification_preferences.html",
        {"form": form, "table": table, "channels": [Channel(ch).label for ch in OUTBOUND_CHANNELS]},
        status=400 if request.method == "POST" else 200,
    )
