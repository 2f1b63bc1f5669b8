"""Django admin for platform staff: review merchant applications, watch members and listings.

Nothing here writes a row itself. Status changes are admin actions that call the transition
services one merchant at a time and report each refusal; the merchant change form saves through
``merchant_create`` / ``merchant_update_application`` / ``merchant_fee_rate_set``, members through
the member services, and listings are read-only apart from the pause/resume actions. Settlement
account numbers are shown masked only.

Actions run on the change list only: Django runs change-form actions inside the form's
transaction, and the transition services own a durable one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import ActionLocation
from django.contrib.postgres.forms import SimpleArrayField
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from bnpl.admin_mixins import ReadOnlyAdminMixin
from bnpl.exceptions import DomainError

from .choices import MerchantCategory
from .forms import MerchantAdminForm, MerchantMemberAdminForm, ReasonForm
from .models import (
    ApiKey,
    Listing,
    Merchant,
    MerchantActivity,
    MerchantEvent,
    MerchantInvitation,
    MerchantMember,
    MerchantTask,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .pricing import PricingRuleError, describe, parse_rule
from .services import (
    APPLICATION_FIELDS,
    EDITABLE_STATUSES,
    api_key_create,
    api_key_revoke,
    listing_pause,
    listing_resume,
    member_add,
    member_change_role,
    member_remove,
    member_remove_check,
    merchant_approve,
    merchant_create,
    merchant_fee_rate_set,
    merchant_reinstate,
    merchant_reject,
    merchant_suspend,
    merchant_update_application,
    webhook_delivery_redeliver,
    webhook_endpoint_clean,
    webhook_endpoint_create,
    webhook_endpoint_update,
)

REASON_TEMPLATE = "admin/merchants/reject_reason.html"


def _report(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: QuerySet,
    apply: Callable[[Any], object],
    done: Any,
) -> None:
    """Apply a service to each selected row; report what succeeded and each refusal.

    One service call (one transaction) per row, so one refused row does not undo the others.
    """
    succeeded: list[str] = []
    for obj in objects.order_by("pk"):
        try:
            apply(obj)
        except DomainError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            succeeded.append(str(obj))
    if succeeded:
        modeladmin.message_user(request, str(done) % {"names": ", ".join(succeeded)}, messages.SUCCESS)


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MerchantMemberInline(_ReadOnlyInline):
    model = MerchantMember
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    verbose_name_plural = _("Team members")


class MerchantEventInline(_ReadOnlyInline):
    model = MerchantEvent
    fields = ("created_at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields
    ordering = ("created_at", "id")
    verbose_name_plural = _("Timeline")


class CategoryListFilter(admin.SimpleListFilter):
    """Merchants whose categories include the chosen one (``categories`` is an array column)."""

    title = _("Business category")
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, Any]]:
        return list(MerchantCategory.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value in MerchantCategory.values:
            return queryset.filter(categories__contains=[value])
        return queryset


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    """Review of merchant applications (KYB) and the merchants' standing.

    Edits go through services: the application fields are editable only while the application
    is a draft or rejected (``merchant_update_application``), the fee rate at any time
    (``merchant_fee_rate_set``), the status never (only through the actions).
    """

    form = MerchantAdminForm
    list_display = (
        "display_name",
        "legal_name",
        "uscc",
        "status",
        "categories_display",
        "city",
        "fee_rate",
        "created_at",
    )
    list_filter = ("status", CategoryListFilter, "city")
    search_fields = ("display_name", "legal_name", "uscc", "contact_phone")
    ordering = ("-created_at",)
    actions = ("approve_selected", "reject_selected", "suspend_selected", "reinstate_selected")
    review_fields = ("status", "rejection_reason", "submitted_at", "approved_at", "created_at", "updated_at")

    @admin.display(description=_("Business categories"))
    def categories_display(self, obj: Merchant) -> str:
        labels = dict(MerchantCategory.choices)
        return ", ".join(str(labels.get(code, code)) for code in obj.categories)

    @admin.display(description=_("Account number"))
    def account_number_masked(self, obj: Merchant) -> str:
        return obj.masked_account_number

    def get_inlines(self, request: HttpRequest, obj: Merchant | None) -> list[type[admin.options.InlineModelAdmin]]:
        return [MerchantMemberInline, MerchantEventInline] if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj: Merchant | None = None) -> list[tuple[Any, dict[str, Any]]]:
        # The clear account number is a form input when staff open an application, never a display.
        account = "settlement_account_number" if obj is None else "account_number_masked"
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            (
                _("Business"),
                {"fields": ("legal_name", "display_name", "uscc", "legal_representative", "city", "categories")},
            ),
            (_("Contact"), {"fields": ("contact_name", "contact_phone", "contact_email")}),
            (_("Settlement"), {"fields": ("settlement_bank_name", "settlement_account_name", account, "fee_rate")}),
        ]
        if obj is not None:
            fieldsets.append((_("Review"), {"fields": self.review_fields}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Merchant | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        readonly = (*self.review_fields, "account_number_masked", "settlement_account_number")
        if obj.status not in EDITABLE_STATUSES:
            readonly = (*readonly, *APPLICATION_FIELDS)
        return readonly

    def has_delete_permission(self, request: HttpRequest, obj: Merchant | None = None) -> bool:
        # Merchants are never deleted: their events, listings and orders are the audit trail.
        return False

    def save_model(self, request: HttpRequest, obj: Merchant, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = merchant_create(
                actor=request.user,
                fee_rate=data.get("fee_rate"),
                **{name: data.get(name, "") for name in APPLICATION_FIELDS},
            )
            # The admin goes on to log and redirect with ``obj``: make it the row the service wrote.
            for field in Merchant._meta.concrete_fields:
                setattr(obj, field.attname, getattr(created, field.attname))
            obj._state.adding, obj._state.db = False, created._state.db
            return
        changed = {name: data[name] for name in form.changed_data if name in APPLICATION_FIELDS}
        if changed:
            merchant_update_application(actor=request.user, merchant=obj, **changed)
        if "fee_rate" in form.changed_data and data.get("fee_rate") is not None:
            merchant_fee_rate_set(actor=request.user, merchant=obj, fee_rate=data["fee_rate"])

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # The inlines are read-only views of members and events: nothing to save. The admin's
        # change message still reads what a save would have reported.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def _reason_action(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        action: str,
        title: Any,
        button: Any,
        service: Callable[..., object],
        done: Any,
    ) -> HttpResponse | None:
        """Ask for a reason on an intermediate page, then apply ``service`` with it to each merchant."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            reason = form.cleaned_data["reason"]
            _report(self, request, queryset, lambda m: service(actor=request.user, merchant=m, reason=reason), done)
            return None
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "form": form,
            "queryset": queryset.order_by("pk"),
            "action": action,
            "button": button,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, REASON_TEMPLATE, context)

    def has_review_permission(self, request: HttpRequest) -> bool:
        # Letting a merchant sell (or stopping it) is granted apart from editing an application.
        return request.user.has_perm(f"{self.opts.app_label}.review_merchant")

    @admin.action(description=_("Approve selected applications"), permissions=["review"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self,
            request,
            queryset,
            lambda m: merchant_approve(actor=request.user, merchant=m),
            _("Approved: %(names)s."),
        )

    @admin.action(description=_("Reject selected applications…"), permissions=["review"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._reason_action(
            request,
            queryset,
            action="reject_selected",
            title=_("Reject applications"),
            button=_("Reject"),
            service=merchant_reject,
            done=_("Rejected: %(names)s."),
        )

    @admin.action(description=_("Suspend selected merchants…"), permissions=["review"])
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._reason_action(
            request,
            queryset,
            action="suspend_selected",
            title=_("Suspend merchants"),
            button=_("Suspend"),
            service=merchant_suspend,
            done=_("Suspended: %(names)s."),
        )

    @admin.action(description=_("Reinstate selected merchants…"), permissions=["review"])
    def reinstate_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._reason_action(
            request,
            queryset,
            action="reinstate_selected",
            title=_("Reinstate merchants"),
            button=_("Reinstate"),
            service=merchant_reinstate,
            done=_("Reinstated: %(names)s."),
        )


@admin.register(MerchantMember)
class MerchantMemberAdmin(admin.ModelAdmin):
    """Merchants' team members; adds, role changes and removals go through the member services."""

    form = MerchantMemberAdminForm
    list_display = ("user", "merchant", "role", "created_at")
    list_filter = ("role",)
    search_fields = (
        "user__username",
        "user__email",
        "merchant__display_name",
        "merchant__legal_name",
        "merchant__uscc",
    )
    list_select_related = ("user", "merchant")
    autocomplete_fields = ("merchant", "user")
    actions = ("remove_selected",)

    def get_readonly_fields(self, request: HttpRequest, obj: MerchantMember | None = None) -> tuple[str, ...]:
        return ("merchant", "user", "created_at") if obj is not None else ()

    def get_actions(
        self, request: HttpRequest, action_location: ActionLocation = ActionLocation.CHANGE_LIST
    ) -> dict[str, Any]:
        actions = super().get_actions(request, action_location=action_location)
        # Bulk delete would bypass the last-owner rule; ``remove_selected`` goes through the service.
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: MerchantMember | None = None) -> bool:
        if obj is not None:
            try:
                member_remove_check(member=obj)
            except DomainError:
                return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: MerchantMember, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            if "role" in form.changed_data:
                member_change_role(actor=request.user, member=obj, role=data["role"])
            return
        created = member_add(actor=request.user, merchant=data["merchant"], user=data["user"], role=data["role"])
        obj.pk, obj.created_at = created.pk, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db

    def delete_model(self, request: HttpRequest, obj: MerchantMember) -> None:
        member_remove(actor=request.user, member=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for member in queryset.order_by("pk"):
            member_remove(actor=request.user, member=member)

    @admin.action(description=_("Remove selected members"), permissions=["delete"])
    def remove_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self, request, queryset, lambda m: member_remove(actor=request.user, member=m), _("Removed: %(names)s.")
        )


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    """Merchants' listings, read-only for staff except taking one off sale and back (via services).

    Merchants write their listings (and prices) in the portal; staff intervene only by pausing.
    """

    list_display = ("title", "merchant", "scenario", "confirm_mode", "max_amount", "min_score", "status")
    list_filter = ("status", "scenario", "confirm_mode", "merchant__status")
    search_fields = ("title", "merchant__display_name", "merchant__legal_name", "merchant__uscc")
    list_select_related = ("merchant",)
    fields = (
        "merchant",
        "title",
        "description",
        "scenario",
        "confirm_mode",
        "max_amount",
        "min_score",
        "order_ttl_minutes",
        "status",
        "pricing_rule_summary",
        "pricing_rule_json",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ("pause_selected", "resume_selected")

    @admin.display(description=_("Pricing"))
    def pricing_rule_summary(self, obj: Listing) -> str:
        try:
            return describe(parse_rule(obj.pricing_rule), get_language() or "zh-hans")
        except PricingRuleError as exc:
            return str(exc)

    @admin.display(description=_("Pricing rule"))
    def pricing_rule_json(self, obj: Listing) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.pricing_rule, indent=2, ensure_ascii=False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Listing | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Listing | None = None) -> bool:
        return False

    def has_pause_permission(self, request: HttpRequest) -> bool:
        # The page is view-only, so the actions check the model's change permission themselves.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Pause selected listings"), permissions=["pause"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self, request, queryset, lambda obj: listing_pause(actor=request.user, listing=obj), _("Paused: %(names)s.")
        )

    @admin.action(description=_("Resume selected listings"), permissions=["pause"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self,
            request,
            queryset,
            lambda obj: listing_resume(actor=request.user, listing=obj),
            _("Back on sale: %(names)s."),
        )


@admin.register(MerchantEvent)
class MerchantEventAdmin(admin.ModelAdmin):
    """The merchants' onboarding audit trail: append-only, so nobody may add, change or delete."""

    list_display = ("created_at", "merchant", "from_status", "to_status", "actor", "reason")
    list_filter = ("to_status",)
    search_fields = ("merchant__display_name", "merchant__legal_name", "merchant__uscc", "reason")
    list_select_related = ("merchant", "actor")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MerchantEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: MerchantEvent | None = None) -> bool:
        return False


# --------------------------------------------------------------------------- API integration


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("merchant", "mode", "label")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Merchants' API keys. Adding one calls ``api_key_create`` and shows the secret once, in a message;
    afterwards only the prefix is ever shown. Keys are revoked (an action), never edited or deleted."""

    list_display = ("prefix", "merchant", "mode", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("mode", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "label", "merchant__display_name", "merchant__legal_name")
    list_select_related = ("merchant",)
    actions = ("revoke_selected",)
    form = ApiKeyAddForm
    readonly = ("merchant", "mode", "label", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return ("merchant", "mode", "label") if obj is None else self.readonly

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else self.readonly

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        try:
            key, secret = api_key_create(actor=request.user, merchant=obj.merchant, mode=obj.mode, label=obj.label)
        except DomainError as exc:
            # The add form has no service-side validation hook; refuse with a message and save nothing.
            self.message_user(request, exc.message, messages.ERROR)
            raise _Refused from exc
        obj.pk = key.pk
        obj.prefix = key.prefix
        self.message_user(
            request,
            _("Copy this API key now; it will not be shown again: %(secret)s") % {"secret": secret},
            messages.WARNING,
        )

    def add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().add_view(request, *args, **kwargs)
        except _Refused:
            return HttpResponseRedirect(request.get_full_path())

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    @admin.action(description=_("Revoke selected API keys"), permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self,
            request,
            queryset,
            lambda obj: api_key_revoke(actor=request.user, api_key=obj),
            _("Revoked: %(names)s."),
        )


class _Refused(Exception):
    """A service refused an admin add; the transaction rolls back and the form is shown again."""


class WebhookEndpointForm(forms.ModelForm):
    event_types = SimpleArrayField(
        forms.CharField(max_length=64), help_text=_("Comma-separated: order.*, order.completed, agreement.*, …")
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("merchant", "url", "description", "event_types", "livemode", "is_active")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if "url" in cleaned and "event_types" in cleaned:
            try:
                webhook_endpoint_clean(url=cleaned["url"], event_types=cleaned["event_types"])
            except DomainError as exc:
                for field, message in exc.fields.items():
                    self.add_error(field if field in self.fields else None, message)
        return cleaned


class WebhookDeliveryInline(_ReadOnlyInline):
    model = WebhookDelivery
    fields = ("endpoint", "status", "attempts", "next_attempt_at", "last_response_status", "delivered_at")
    readonly_fields = fields


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Merchants' webhook URLs. Adding one shows its ``whsec_`` signing secret once; the secret is
    stored encrypted and never shown again (only a hint). Saves go through the webhook services."""

    list_display = ("url", "merchant", "livemode", "is_active", "event_types", "secret_hint", "created_at")
    list_filter = ("livemode", "is_active")
    search_fields = ("url", "merchant__display_name", "merchant__legal_name")
    list_select_related = ("merchant",)
    form = WebhookEndpointForm

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        base = ("secret_hint", "created_by", "created_at", "updated_at")
        return base if obj is None else ("merchant", "livemode", *base)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(
                actor=request.user,
                endpoint=obj,
                url=data["url"],
                event_types=data["event_types"],
                is_active=data["is_active"],
                description=data.get("description", ""),
            )
            return
        endpoint, secret = webhook_endpoint_create(
            actor=request.user,
            merchant=data["merchant"],
            url=data["url"],
            event_types=data["event_types"],
            livemode=data["livemode"],
            description=data.get("description", ""),
        )
        obj.pk = endpoint.pk
        self.message_user(
            request,
            _("Copy this signing secret now; it will not be shown again: %(secret)s") % {"secret": secret},
            messages.WARNING,
        )

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    """The webhook outbox: what was (or will be) told to each merchant, with its deliveries."""

    list_display = ("created_at", "type", "merchant", "ordering_key", "livemode")
    list_filter = ("type", "livemode")
    search_fields = ("ordering_key", "merchant__display_name")
    list_select_related = ("merchant",)
    fields = ("uuid", "merchant", "type", "livemode", "ordering_key", "payload", "created_at")
    readonly_fields = fields
    inlines = (WebhookDeliveryInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False


class WebhookAttemptInline(_ReadOnlyInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "duration_ms", "response_status", "succeeded", "error", "response_excerpt")
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: each event to each endpoint with every attempt; failed ones can be sent again."""

    list_display = (
        "id",
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "last_response_status",
        "delivered_at",
    )
    list_filter = ("status",)
    search_fields = ("event__type", "endpoint__url", "ordering_key")
    list_select_related = ("event", "endpoint")
    fields = (
        "event",
        "endpoint",
        "ordering_key",
        "status",
        "attempts",
        "next_attempt_at",
        "last_response_status",
        "last_error",
        "delivered_at",
        "redelivered_at",
        "redelivered_by",
        "created_at",
    )
    readonly_fields = fields
    inlines = (WebhookAttemptInline,)
    actions = ("redeliver_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description=_("Send selected deliveries again"), permissions=["redeliver"])
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        _report(
            self,
            request,
            queryset,
            lambda obj: webhook_delivery_redeliver(actor=request.user, delivery=obj),
            _("Queued again: %(names)s."),
        )


@admin.register(MerchantActivity)
class MerchantActivityAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The merchants' team activity logs, read-only: written by the portal and the API as things happen."""

    list_display = ("created_at", "merchant", "user", "role", "action", "target")
    list_filter = ("action", "role")
    search_fields = ("merchant__display_name", "merchant__legal_name", "user__username", "action", "target")
    list_select_related = ("merchant", "user")
    date_hierarchy = "created_at"
    fields = ("merchant", "user", "role", "action", "target", "detail", "created_at")
    readonly_fields = fields
    show_full_result_count = False


@admin.register(MerchantTask)
class MerchantTaskAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Background portal work (exports, imports), read-only: to see what ran, for whom, and why it failed."""

    list_display = ("id", "merchant", "kind", "status", "done", "total", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("merchant__display_name", "created_by__username")
    list_select_related = ("merchant", "created_by")
    fields = (
        "merchant",
        "created_by",
        "kind",
        "status",
        "params",
        "done",
        "total",
        "result",
        "result_file",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields


@admin.register(MerchantInvitation)
class MerchantInvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Team invitations, read-only (owners create and revoke them in the portal); the token is never shown."""

    list_display = ("merchant", "email", "phone", "role", "status", "expires_at", "invited_by", "accepted_by")
    list_filter = ("status", "role")
    search_fields = ("merchant__display_name", "email", "phone")
    list_select_related = ("merchant", "invited_by", "accepted_by")
    fields = (
        "merchant",
        "email",
        "phone",
        "role",
        "status",
        "expires_at",
        "invited_by",
        "accepted_by",
        "accepted_at",
        "created_at",
    )
    readonly_fields = fields
