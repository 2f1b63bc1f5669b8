"""Django admin of the pay-later core, for platform staff (运营 / 风控 / 财务).

Everything here is read-only: orders, agreements and their rows change only through
the services in :mod:`bnpl.services`, which the actions below call with the staff
user as actor, so every change leaves the same event row as any other.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bnpl.admin_mixins import ReadOnlyAdminMixin

from .choices import ActorKind, AgreementStatus, OrderStatus
from .exceptions import DomainError
from .models import Agreement, BillLine, CreditOrder, OrderEvent, UsageEvent
from .services import agreement_close, credit_order_cancel, credit_order_expire


class ReasonForm(forms.Form):
    """The reason asked on the intermediate page of an action that needs one."""

    reason = forms.CharField(label=_("Reason"), max_length=200, widget=forms.Textarea(attrs={"rows": 3}))


def _all_fields(model: type) -> list[str]:
    return [f.name for f in model._meta.get_fields() if f.concrete and not f.auto_created] + ["id"]


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


class BillLineInline(ReadOnlyInline):
    model = BillLine
    fields = ["position", "name", "quantity", "unit", "unit_price", "amount", "is_discount"]
    readonly_fields = fields


class UsageEventInline(ReadOnlyInline):
    model = UsageEvent
    fields = ["merchant_event_id", "quantity", "occurred_at", "properties", "created_at"]
    readonly_fields = fields


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    verbose_name_plural = _("Timeline")
    fields = ["created_at", "from_status", "to_status", "actor_kind", "actor", "reason", "data"]
    readonly_fields = fields


def _reason_page(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, action: str, title: str
) -> tuple[ReasonForm, TemplateResponse | None]:
    """Bind the reason form on the second submit, or render the intermediate page asking for it."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        return form, None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "objects": queryset,
        "form": form,
        "action": action,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "opts": modeladmin.model._meta,
    }
    return form, TemplateResponse(request, "admin/bnpl/cancel_reason.html", context)


@admin.register(CreditOrder)
class CreditOrderAdmin(admin.ModelAdmin):
    """Orders, read-only, with their bill, usage and timeline; staff act through services."""

    list_display = [
        "id",
        "out_order_no",
        "merchant",
        "consumer",
        "scenario",
        "status",
        "max_amount",
        "amount_due",
        "due_at",
        "created_at",
    ]
    list_filter = ["status", "scenario", "confirm_mode"]
    search_fields = ["out_order_no", "consumer__phone"]
    list_select_related = ["merchant", "consumer"]
    date_hierarchy = "created_at"
    inlines = [BillLineInline, UsageEventInline, OrderEventInline]
    actions = ["expire_overdue_confirmations", "cancel_with_reason"]
    exclude = ["confirmation_token"]

    def get_readonly_fields(self, request: HttpRequest, obj: CreditOrder | None = None) -> list[str]:
        return [f for f in _all_fields(CreditOrder) if f != "confirmation_token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: CreditOrder | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CreditOrder | None = None) -> bool:
        # The change page is a read-only view; the change permission only gates the actions.
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    @admin.action(description=_("Expire selected confirmations past their deadline"), permissions=["change"])
    def expire_overdue_confirmations(self, request: HttpRequest, queryset: QuerySet[CreditOrder]) -> None:
        now = timezone.now()
        due = queryset.filter(status=OrderStatus.PENDING_CONFIRMATION, expires_at__lte=now)
        expired = 0
        for order in due:
            try:
                credit_order_expire(order=order)
            except DomainError:
                continue  # confirmed or expired meanwhile by someone else
            expired += 1
        skipped = queryset.count() - expired
        self.message_user(
            request,
            ngettext("%(n)d order expired.", "%(n)d orders expired.", expired) % {"n": expired}
            + (" " + _("%(n)d skipped (not pending past the deadline).") % {"n": skipped} if skipped else ""),
            messages.SUCCESS,
        )

    @admin.action(description=_("Cancel selected orders with a reason"), permissions=["change"])
    def cancel_with_reason(self, request: HttpRequest, queryset: QuerySet[CreditOrder]) -> TemplateResponse | None:
        form, page = _reason_page(self, request, queryset, action="cancel_with_reason", title=_("Cancel credit orders"))
        if page is not None:
            return page
        cancelled = 0
        for order in queryset:
            try:
                credit_order_cancel(
                    actor=request.user,
                    actor_kind=ActorKind.STAFF,
                    order=order,
                    reason=form.cleaned_data["reason"],
                )
            except DomainError as exc:
                self.message_user(request, f"{order.out_order_no}: {exc.message}", messages.WARNING)
                continue
            cancelled += 1
        self.message_user(
            request,
            ngettext("%(n)d order cancelled.", "%(n)d orders cancelled.", cancelled) % {"n": cancelled},
            messages.SUCCESS,
        )
        return None


@admin.register(Agreement)
class AgreementAdmin(admin.ModelAdmin):
    """Standing agreements, read-only; staff may close one (as the consumer could) through the service."""

    list_display = ["id", "consumer", "merchant", "listing", "status", "signed_at", "closed_at"]
    list_filter = ["status"]
    search_fields = ["consumer__phone", "merchant__display_name", "listing__title"]
    list_select_related = ["consumer", "merchant", "listing"]
    actions = ["close_with_reason"]

    def get_readonly_fields(self, request: HttpRequest, obj: Agreement | None = None) -> list[str]:
        return _all_fields(Agreement)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Agreement | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Agreement | None = None) -> bool:
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    @admin.action(description=_("Close selected agreements"), permissions=["change"])
    def close_with_reason(self, request: HttpRequest, queryset: QuerySet[Agreement]) -> TemplateResponse | None:
        form, page = _reason_page(self, request, queryset, action="close_with_reason", title=_("Close agreements"))
        if page is not None:
            return page
        closed = 0
        for agreement in queryset.filter(status=AgreementStatus.VALID):
            try:
                agreement_close(actor=request.user, agreement=agreement, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                self.message_user(request, f"#{agreement.pk}: {exc.message}", messages.WARNING)
                continue
            closed += 1
        self.message_user(
            request,
            ngettext("%(n)d agreement closed.", "%(n)d agreements closed.", closed) % {"n": closed},
            messages.SUCCESS,
        )
        return None


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit trail of every order state change."""

    list_display = ["id", "order", "from_status", "to_status", "actor_kind", "actor", "created_at"]
    list_filter = ["to_status", "actor_kind"]
    search_fields = ["order__out_order_no", "reason"]
    list_select_related = ["order", "actor"]
    readonly_fields = _all_fields(OrderEvent)


@admin.register(BillLine)
class BillLineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Final bill lines, as completed."""

    list_display = ["id", "order", "position", "name", "quantity", "unit", "unit_price", "amount", "is_discount"]
    search_fields = ["order__out_order_no", "name"]
    list_select_related = ["order"]
    readonly_fields = _all_fields(BillLine)


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Usage reports as the merchants sent them."""

    list_display = ["id", "merchant", "order", "merchant_event_id", "quantity", "occurred_at", "created_at"]
    search_fields = ["merchant_event_id", "order__out_order_no"]
    list_select_related = ["merchant", "order"]
    readonly_fields = _all_fields(UsageEvent)


from bnpl import ledger_admin  # noqa: E402, F401  (registers the ledger and sandbox admins)

# isort: split
from bnpl import charging_admin  # noqa: E402, F401  (registers the charging admins and the collection actions)

# isort: split
from bnpl import settlement_admin  # noqa: E402, F401  (registers the refund, dispute and settlement admins)

# isort: split
from bnpl import incentives_admin  # noqa: E402, F401  (registers the campaign admins and the programme totals)

# isort: split
from bnpl import audit_admin  # noqa: E402, F401  (registers the read-only audit trail pages)

# isort: split
from bnpl import tasks_admin  # noqa: E402, F401  (django-q2's task pages, resubmitting behind the change permission)
