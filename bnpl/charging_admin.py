"""Django admin of charging: charge runs and attempts (read-only), and the collection actions on orders.

Staff watch charge runs here (counts, totals, progress; a run whose worker died is
marked failed by the next one), read every attempt with its key and gateway answer,
and act only through services: "retry now" brings a collecting order's next charge
forward (``credit_order_retry_charge``), "write off" closes an overdue one
(``credit_order_write_off``). Imported by ``bnpl.admin`` so the registrations happen
when the admin is discovered; the credit-order admin is re-registered here with the
collection actions and an attempts inline added to it.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from bnpl.admin import CreditOrderAdmin, ReadOnlyInline, _all_fields, _reason_page
from bnpl.charging import credit_order_retry_charge
from bnpl.choices import OrderStatus
from bnpl.exceptions import DomainError
from bnpl.models import ChargeAttempt, ChargeRun, CreditOrder
from bnpl.models.charging import AttemptStatus
from bnpl.overdue import credit_order_write_off


class _ViewWithActions(admin.ModelAdmin):
    """Read-only rows; the change permission only gates the actions (which go through services)."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)


def _retry_orders(modeladmin: admin.ModelAdmin, request: HttpRequest, orders: QuerySet[CreditOrder]) -> None:
    retried = 0
    for order in orders:
        try:
            credit_order_retry_charge(actor=request.user, order=order)
        except DomainError as exc:
            modeladmin.message_user(request, f"{order.out_order_no}: {exc.message}", messages.WARNING)
            continue
        retried += 1
    modeladmin.message_user(
        request,
        ngettext(
            "%(n)d order will be charged again by the next charge run.",
            "%(n)d orders will be charged again by the next charge run.",
            retried,
        )
        % {"n": retried},
        messages.SUCCESS,
    )


FAILED = [AttemptStatus.DECLINED, AttemptStatus.NOT_FOUND]
IN_COLLECTION = [OrderStatus.COLLECTING, OrderStatus.OVERDUE]


def _can_retry_charge(request: HttpRequest) -> bool:
    """Charging again is its own permission (bnpl/staff_groups.py), whichever page the action is on."""
    return request.user.has_perm("bnpl.retry_charge_creditorder")


@admin.register(ChargeRun)
class ChargeRunAdmin(_ViewWithActions):
    """Charge and reconcile runs: who ran, how far they got, what they charged."""

    list_display = [
        "id",
        "kind",
        "status",
        "worker",
        "started_at",
        "progress_at",
        "finished_at",
        "claimed",
        "resent",
        "succeeded",
        "declined",
        "unknown",
        "errors",
        "succeeded_amount",
        "declined_amount",
    ]
    list_filter = ["kind", "status"]
    date_hierarchy = "started_at"
    actions = ["retry_failures"]

    def get_readonly_fields(self, request: HttpRequest, obj: ChargeRun | None = None) -> list[str]:
        return _all_fields(ChargeRun)

    def has_retry_charge_permission(self, request: HttpRequest) -> bool:
        return _can_retry_charge(request)

    @admin.action(description=_("Retry the failed charges of the selected runs now"), permissions=["retry_charge"])
    def retry_failures(self, request: HttpRequest, queryset: QuerySet[ChargeRun]) -> None:
        orders = CreditOrder.objects.filter(
            charge_attempts__run__in=queryset, charge_attempts__status__in=FAILED, status__in=IN_COLLECTION
        ).distinct()
        _retry_orders(self, request, orders)


class ChargeAttemptInline(ReadOnlyInline):
    model = ChargeAttempt
    verbose_name_plural = _("Charge attempts")
    fields = [
        "sequence",
        "trigger",
        "status",
        "amount",
        "decline_code",
        "gateway_reference",
        "idempotency_key",
        "requested_at",
        "finished_at",
    ]
    readonly_fields = fields


@admin.register(ChargeAttempt)
class ChargeAttemptAdmin(_ViewWithActions):
    """Every charge attempt with its fixed idempotency key and the gateway's answer."""

    list_display = [
        "id",
        "order",
        "sequence",
        "trigger",
        "status",
        "amount",
        "decline_code",
        "gateway_reference",
        "requested_at",
        "finished_at",
        "run",
    ]
    list_filter = ["status", "trigger", "decline_code"]
    search_fields = ["idempotency_key", "gateway_reference", "order__out_order_no"]
    list_select_related = ["order", "run"]
    raw_id_fields = ["order", "run"]
    date_hierarchy = "requested_at"
    actions = ["retry_orders_now"]

    def get_readonly_fields(self, request: HttpRequest, obj: ChargeAttempt | None = None) -> list[str]:
        return _all_fields(ChargeAttempt)

    def has_retry_charge_permission(self, request: HttpRequest) -> bool:
        return _can_retry_charge(request)

    @admin.action(
        description=_("Charge the orders of the selected failed attempts again now"), permissions=["retry_charge"]
    )
    def retry_orders_now(self, request: HttpRequest, queryset: QuerySet[ChargeAttempt]) -> None:
        orders = CreditOrder.objects.filter(
            charge_attempts__in=queryset.filter(status__in=FAILED), status__in=IN_COLLECTION
        ).distinct()
        _retry_orders(self, request, orders)


class CollectionCreditOrderAdmin(CreditOrderAdmin):
    """The credit-order admin with its charge attempts and the collection actions."""

    inlines = [*CreditOrderAdmin.inlines, ChargeAttemptInline]
    actions = [*CreditOrderAdmin.actions, "retry_charge_now", "write_off_with_reason"]
    list_filter = [*CreditOrderAdmin.list_filter, "dpd_bucket"]

    def has_retry_charge_permission(self, request: HttpRequest) -> bool:
        return _can_retry_charge(request)

    def has_write_off_permission(self, request: HttpRequest) -> bool:
        # Not the change permission: support may cancel an order, only finance closes a debt as a loss.
        return request.user.has_perm("bnpl.write_off_creditorder")

    @admin.action(description=_("Charge the selected collecting orders again now"), permissions=["retry_charge"])
    def retry_charge_now(self, request: HttpRequest, queryset: QuerySet[CreditOrder]) -> None:
        _retry_orders(self, request, queryset)

    @admin.action(description=_("Write off the selected overdue orders"), permissions=["write_off"])
    def write_off_with_reason(self, request: HttpRequest, queryset: QuerySet[CreditOrder]) -> TemplateResponse | None:
        form, page = _reason_page(
            self, request, queryset, action="write_off_with_reason", title=_("Write off credit orders")
        )
        if page is not None:
            return page
        written_off = 0
        for order in queryset:
            try:
                credit_order_write_off(actor=request.user, order=order, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                self.message_user(request, f"{order.out_order_no}: {exc.message}", messages.WARNING)
                continue
            written_off += 1
        self.message_user(
            request,
            ngettext("%(n)d order written off.", "%(n)d orders written off.", written_off) % {"n": written_off},
            messages.SUCCESS,
        )
        return None


admin.site.unregister(CreditOrder)
admin.site.register(CreditOrder, CollectionCreditOrderAdmin)
