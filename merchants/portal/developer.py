"""Developer settings (owner only): API keys, webhook endpoints and their delivery log.

Secrets are shown once: an API key's secret and a webhook signing secret appear in the response to the
request that created (or rotated) them, never again: only a keyed hash of an API key and an encrypted
webhook secret are stored (``merchants.services``). A merchant not yet approved works in test mode: it may
create test keys and test-mode endpoints (sandbox consumers only); live keys come with approval.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.exceptions import DomainError

from ..activity import activity_record
from ..choices import WEBHOOK_EVENT_FAMILIES, ApiKeyMode, MerchantStatus
from ..forms import add_domain_errors
from ..models import ApiKey, WebhookDelivery, WebhookEndpoint
from ..selectors import (
    api_key_get_for_merchant,
    api_keys_for_merchant,
    webhook_deliveries_for_endpoint,
    webhook_delivery_get_for_merchant,
    webhook_endpoint_get_for_merchant,
    webhook_endpoints_for_merchant,
)
from ..services import (
    api_key_create,
    api_key_revoke,
    webhook_delivery_redeliver,
    webhook_endpoint_clean,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from .access import Capability, member_required

DELIVERIES_PAGE_SIZE = 25
_FAMILY_LABELS = {
    "order": gettext_lazy("Orders"),
    "charge": gettext_lazy("Charges"),
    "refund": gettext_lazy("Refunds"),
    "agreement": gettext_lazy("Standing agreements"),
    "dispute": gettext_lazy("Disputes"),
    "settlement": gettext_lazy("Settlements"),
}


def event_type_choices(current: list[str] | None = None) -> list[tuple[str, Any]]:
    """Every event family (``order.*``) plus any single types an endpoint already subscribes to."""
    choices: list[tuple[str, Any]] = [("*", _("All events"))]
    choices += [
        (f"{family}.*", f"{_FAMILY_LABELS.get(family, family)} ({family}.*)") for family in WEBHOOK_EVENT_FAMILIES
    ]
    known = {value for value, _label in choices}
    choices += [(value, value) for value in current or [] if value not in known]
    return choices


class ApiKeyForm(forms.Form):
    mode = forms.ChoiceField(label=gettext_lazy("Mode"), choices=ApiKeyMode.choices, initial=ApiKeyMode.TEST)
    label = forms.CharField(
        label=gettext_lazy("Label"),
        max_length=100,
        required=False,
        help_text=gettext_lazy("Where the key is used, e.g. “charging station backend”."),
    )


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label=gettext_lazy("URL"),
        max_length=500,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/bnpl/webhooks"}),
    )
    description = forms.CharField(label=gettext_lazy("Description"), max_length=200, required=False)
    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("Events"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": gettext_lazy("Choose at least one kind of event.")},
    )

    def __init__(self, *args: Any, current: list[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["event_types"].choices = event_type_choices(current)

    def clean(self) -> dict[str, Any]:
        # The service checks the URL again when saving; checking here too shows every field's problem at once.
        cleaned = super().clean()
        if cleaned.get("url") and "url" not in self.errors:
            try:
                webhook_endpoint_clean(url=cleaned["url"], event_types=["*"])
            except DomainError as exc:
                self.add_error("url", exc.fields.get("url", exc.message))
        return cleaned


class WebhookCreateForm(WebhookEndpointForm):
    livemode = forms.TypedChoiceField(
        label=gettext_lazy("Mode"),
        choices=[("0", gettext_lazy("Test")), ("1", gettext_lazy("Live"))],
        coerce=lambda value: value == "1",
        initial="0",
        widget=forms.RadioSelect,
        help_text=gettext_lazy(
            "A test endpoint receives the events of test-mode orders only, a live one of live orders."
        ),
    )


class WebhookEditForm(WebhookEndpointForm):
    is_active = forms.BooleanField(label=gettext_lazy("Active"), required=False)


def url_for_log(url: str) -> str:
    """A webhook URL as the activity log shows it: no user-info (``user:pass@``) and no query string or fragment.

    Merchants sometimes put a token in either; the log is read by every owner and kept, so neither goes in.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _record(request: HttpRequest, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    activity_record(
        merchant=request.merchant,  # type: ignore[attr-defined]
        member=request.member,  # type: ignore[attr-defined]
        action=action,
        target=target,
        detail=detail,
    )


def _page(request: HttpRequest, key_form: ApiKeyForm | None = None, status: int = 200) -> HttpResponse:
    merchant = request.merchant  # type: ignore[attr-defined]
    return render(
        request,
        "merchants/developer.html",
        {
            "keys": list(api_keys_for_merchant(merchant=merchant)),
            "endpoints": list(webhook_endpoints_for_merchant(merchant=merchant)),
            "key_form": key_form or ApiKeyForm(),
            "test_mode_only": merchant.status != MerchantStatus.APPROVED,
            "keys_blocked": merchant.status in (MerchantStatus.REJECTED, MerchantStatus.SUSPENDED),
            "api_docs_url": reverse("api-docs"),
        },
        status=status,
    )


@member_required(Capability.MANAGE_DEVELOPER)
@require_GET
def developer_view(request: HttpRequest) -> HttpResponse:
    """API keys and webhook endpoints at a glance, with the API reference link and the test-mode notice."""
    return _page(request)


@member_required(Capability.MANAGE_DEVELOPER)
@require_POST
@never_cache
def api_key_create_view(request: HttpRequest) -> HttpResponse:
    """Issue a key and show its secret this once."""
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                key, secret = api_key_create(
                    actor=request.user,
                    merchant=request.merchant,  # type: ignore[attr-defined]
                    mode=form.cleaned_data["mode"],
                    label=form.cleaned_data["label"],
                )
                _record(request, "api_key.create", key.prefix, {"mode": key.mode, "label": key.label})
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            return render(request, "merchants/developer_secret.html", {"kind": "api_key", "secret": secret, "key": key})
    return _page(request, form)


@member_required(Capability.MANAGE_DEVELOPER)
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key = api_key_get_for_merchant(merchant=request.merchant, api_key_id=key_id)  # type: ignore[attr-defined]
    except ApiKey.DoesNotExist:
        raise Http404 from None
    try:
        with transaction.atomic():
            api_key_revoke(actor=request.user, api_key=key)
            _record(request, "api_key.revoke", key.prefix, {"mode": key.mode})
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Key %(prefix)s… was revoked: requests with it now get 401.") % {"prefix": key.prefix}
        )
    return redirect("merchant:developer")


def _endpoint(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    try:
        return webhook_endpoint_get_for_merchant(merchant=request.merchant, endpoint_id=endpoint_id)  # type: ignore[attr-defined]
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None


@member_required(Capability.MANAGE_DEVELOPER)
@require_http_methods(["GET", "POST"])
@never_cache
def webhook_create_view(request: HttpRequest) -> HttpResponse:
    """Add an endpoint; its signing secret is shown once."""
    form = WebhookCreateForm(request.POST if request.method == "POST" else None, initial={"event_types": ["order.*"]})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                endpoint, secret = webhook_endpoint_create(
                    actor=request.user,
                    merchant=request.merchant,  # type: ignore[attr-defined]
                    url=data["url"],
                    event_types=data["event_types"],
                    livemode=data["livemode"],
                    description=data["description"],
                )
                _record(request, "webhook.create", url_for_log(endpoint.url), {"events": endpoint.event_types})
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            return render(
                request, "merchants/developer_secret.html", {"kind": "webhook", "secret": secret, "endpoint": endpoint}
            )
    return render(request, "merchants/webhook_form.html", {"form": form, "endpoint": None})


@member_required(Capability.MANAGE_DEVELOPER)
@require_http_methods(["GET", "POST"])
def webhook_edit_view(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """Change an endpoint's URL, events, description or active flag (the secret stays)."""
    endpoint = _endpoint(request, endpoint_id)
    initial = {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "is_active": endpoint.is_active,
    }
    form = WebhookEditForm(
        request.POST if request.method == "POST" else None, initial=initial, current=endpoint.event_types
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                webhook_endpoint_update(
                    actor=request.user,
                    endpoint=endpoint,
                    url=data["url"],
                    event_types=data["event_types"],
                    is_active=data["is_active"],
                    description=data["description"],
                )
                _record(request, "webhook.update", url_for_log(data["url"]), {"events": data["event_types"]})
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            messages.success(request, _("The webhook endpoint was saved."))
            return redirect("merchant:developer")
    return render(request, "merchants/webhook_form.html", {"form": form, "endpoint": endpoint})


@member_required(Capability.MANAGE_DEVELOPER)
@require_POST
@never_cache
def webhook_rotate_view(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """Replace the endpoint's signing secret now and show the new one once."""
    endpoint = _endpoint(request, endpoint_id)
    with transaction.atomic():
        endpoint, secret = webhook_endpoint_rotate_secret(actor=request.user, endpoint=endpoint)
        _record(request, "webhook.rotate_secret", url_for_log(endpoint.url))
    return render(
        request,
        "merchants/developer_secret.html",
        {"kind": "webhook", "secret": secret, "endpoint": endpoint, "rotated": True},
    )


@member_required(Capability.MANAGE_DEVELOPER)
@require_GET
def webhook_deliveries_view(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    """The endpoint's delivery log: each event, its status and every HTTP attempt; redeliver from here."""
    endpoint = _endpoint(request, endpoint_id)
    page = Paginator(webhook_deliveries_for_endpoint(endpoint=endpoint), DELIVERIES_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"endpoint": endpoint, "page": page, "deliveries": list(page.object_list)}
    template = "merchants/webhook_deliveries.html#results" if request.htmx else "merchants/webhook_deliveries.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@member_required(Capability.MANAGE_DEVELOPER)
@require_POST
def webhook_redeliver_view(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """Send a delivery again (the sweeper picks it up within seconds)."""
    try:
        delivery = webhook_delivery_get_for_merchant(merchant=request.merchant, delivery_id=delivery_id)  # type: ignore[attr-defined]
    except WebhookDelivery.DoesNotExist:
        raise Http404 from None
    try:
        with transaction.atomic():
            webhook_delivery_redeliver(actor=request.user, delivery=delivery)
            _record(request, "webhook.redeliver", url_for_log(delivery.endpoint.url), {"delivery": delivery.pk})
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The event will be sent again in a moment."))
    return redirect("merchant:webhook_deliveries", endpoint_id=delivery.endpoint_id)


urlpatterns = [
    path("developer/", developer_view, name="developer"),
    path("developer/keys/", api_key_create_view, name="api_key_create"),
    path("developer/keys/<int:key_id>/revoke/", api_key_revoke_view, name="api_key_revoke"),
    path("developer/webhooks/new/", webhook_create_view, name="webhook_create"),
    path("developer/webhooks/<int:endpoint_id>/", webhook_edit_view, name="webhook_edit"),
    path("developer/webhooks/<int:endpoint_id>/rotate/", webhook_rotate_view, name="webhook_rotate"),
    path("developer/webhooks/<int:endpoint_id>/deliveries/", webhook_deliveries_view, name="webhook_deliveries"),
    path("developer/deliveries/<int:delivery_id>/redeliver/", webhook_redeliver_view, name="webhook_redeliver"),
]
