"""Django admin for platform staff: consumers, credit profiles, limit history and promise records.

Everything here is read-only except through services: a limit adjustment, a pause
and an unpause are admin actions that ask for a written reason on an intermediate
page and call ``credit_limit_set`` / ``credit_profile_pause`` / ``credit_profile_unpause``,
so each leaves the same history row and log line as any other caller. Money is
shown as ``¥1,234.50`` and never editable. The resident ID hash is never shown.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from bnpl.admin_mixins import ReadOnlyAdminMixin
from bnpl.exceptions import DomainError
from bnpl.money import format_cny

from .choices import LimitChangeReason
from .forms import CreditLimitAdjustForm, ProfileReasonForm, add_domain_error
from .models import (
    Consumer,
    CreditProfile,
    CreditProfileEvent,
    LevelChange,
    LimitChange,
    PointsEntry,
    PromiseRecord,
    RewardAccount,
)
from .services import credit_limit_set, credit_profile_pause, credit_profile_unpause


def _money(description: str, field: str) -> Callable:
    """A list/detail column showing ``field`` as ``¥1,234.50`` (sortable by the field)."""

    @admin.display(description=description, ordering=field)
    def show(self, obj) -> str:
        return format_cny(getattr(obj, field))

    return show


class CreditProfileInline(ReadOnlyAdminMixin, admin.StackedInline):
    """The consumer's profile on the consumer page, linking to where its actions are."""

    model = CreditProfile
    fields = ("score", "band", "limit_display", "exposure_display", "available_display", "is_paused", "paused_reason")
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    limit_display = _money(gettext_lazy("Credit limit"), "credit_limit_amount")
    exposure_display = _money(gettext_lazy("Held amount"), "open_exposure_amount")
    available_display = _money(gettext_lazy("Available"), "available_amount")


@admin.register(Consumer)
class ConsumerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Consumers. The phone is masked in lists; the ID number only ever appears masked."""

    list_display = (
        "masked_phone_display",
        "real_name",
        "id_number_masked",
        "is_verified_display",
        "city",
        "created_at",
    )
    list_filter = ("city",)
    search_fields = ("phone", "real_name")
    date_hierarchy = "created_at"
    # An explicit list: ``id_number_hash`` (and the login behind the account) must never show here.
    fields = (
        "masked_phone_display",
        "phone_verified",
        "real_name",
        "id_number_masked",
        "verified_at",
        "city",
        "created_at",
    )
    readonly_fields = fields
    inlines = [CreditProfileInline]

    @admin.display(description=gettext_lazy("Phone"), ordering="phone")
    def masked_phone_display(self, obj: Consumer) -> str:
        return obj.masked_phone

    @admin.display(description=gettext_lazy("Verified"), boolean=True, ordering="verified_at")
    def is_verified_display(self, obj: Consumer) -> bool:
        return obj.is_verified


class LimitChangeInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The profile's limit history, newest first."""

    model = LimitChange
    fields = ("created_at", "reason_code", "before_display", "after_display", "reason", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    can_delete = False

    before_display = _money(gettext_lazy("Before"), "before_amount")
    after_display = _money(gettext_lazy("After"), "after_amount")

    def get_queryset(self, request: HttpRequest) -> QuerySet[LimitChange]:
        return super().get_queryset(request).select_related("actor")


class CreditProfileEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Pauses, lifted pauses and score changes, newest first."""

    model = CreditProfileEvent
    fields = ("created_at", "kind", "before", "after", "reason", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CreditProfileEvent]:
        return super().get_queryset(request).select_related("actor")


@admin.register(CreditProfile)
class CreditProfileAdmin(admin.ModelAdmin):
    """Credit profiles: read-only, with actions to adjust the limit and to pause / unpause, each with a reason."""

    list_display = (
        "consumer",
        "score",
        "band",
        "limit_display",
        "exposure_display",
        "available_display",
        "is_paused",
    )
    list_filter = ("band", "is_paused")
    search_fields = ("consumer__phone", "consumer__real_name")
    list_select_related = ("consumer",)
    fields = (
        "consumer",
        "score",
        "band",
        "limit_display",
        "exposure_display",
        "available_display",
        "is_paused",
        "paused_reason",
        "updated_at",
    )
    readonly_fields = fields
    inlines = [LimitChangeInline, CreditProfileEventInline]
    actions = ["adjust_limit", "pause", "unpause"]

    limit_display = _money(gettext_lazy("Credit limit"), "credit_limit_amount")
    exposure_display = _money(gettext_lazy("Held amount"), "open_exposure_amount")
    available_display = _money(gettext_lazy("Available"), "available_amount")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Profiles are created by consumer_register only.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Change permission gates the actions on the list (obj is None); a single profile's page
        # is view-only, so the admin's own save() can never write a profile.
        return obj is None and super().has_change_permission(request, obj)

    # --- actions -------------------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Adjust credit limit (with a reason)"), permissions=["change"])
    def adjust_limit(self, request: HttpRequest, queryset: QuerySet[CreditProfile]) -> HttpResponse | None:
        def apply(profile: CreditProfile, data: dict) -> None:
            credit_limit_set(
                actor=request.user,
                consumer=profile.consumer,
                amount=data["amount"],
                reason_code=LimitChangeReason.STAFF,
                reason=data["reason"],
            )

        return self._reasoned_action(
            request,
            queryset,
            action="adjust_limit",
            form_class=CreditLimitAdjustForm,
            template="admin/consumers/adjust_limit.html",
            title=_("Adjust credit limit"),
            apply=apply,
            done_message=lambda n: (
                ngettext(
                    "Credit limit adjusted for %(count)d consumer.", "Credit limit adjusted for %(count)d consumers.", n
                )
                % {"count": n}
            ),
        )

    @admin.action(description=gettext_lazy("Pause pay-later (with a reason)"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[CreditProfile]) -> HttpResponse | None:
        return self._reasoned_action(
            request,
            queryset,
            action="pause",
            form_class=ProfileReasonForm,
            template="admin/consumers/profile_reason.html",
            title=_("Pause pay-later"),
            apply=lambda profile, data: credit_profile_pause(
                actor=request.user, consumer=profile.consumer, reason=data["reason"]
            ),
            done_message=lambda n: (
                ngettext("Pay-later paused for %(count)d consumer.", "Pay-later paused for %(count)d consumers.", n)
                % {"count": n}
            ),
        )

    @admin.action(description=gettext_lazy("Unpause pay-later (with a reason)"), permissions=["change"])
    def unpause(self, request: HttpRequest, queryset: QuerySet[CreditProfile]) -> HttpResponse | None:
        return self._reasoned_action(
            request,
            queryset,
            action="unpause",
            form_class=ProfileReasonForm,
            template="admin/consumers/profile_reason.html",
            title=_("Unpause pay-later"),
            apply=lambda profile, data: credit_profile_unpause(
                actor=request.user, consumer=profile.consumer, reason=data["reason"]
            ),
            done_message=lambda n: (
                ngettext("Pay-later unpaused for %(count)d consumer.", "Pay-later unpaused for %(count)d consumers.", n)
                % {"count": n}
            ),
        )

    def _reasoned_action(
        self,
        request: HttpRequest,
        queryset: QuerySet[CreditProfile],
        *,
        action: str,
        form_class: type[forms.Form],
        template: str,
        title: str,
        apply: Callable[[CreditProfile, dict], object],
        done_message: Callable[[int], str],
    ) -> HttpResponse | None:
        """Ask for the form on an intermediate page, then call the service once per selected profile.

        The first POST (from the action bar) shows the page; the page posts back with
        ``apply``. An invalid form re-renders with its errors and changes nothing. Each
        profile goes through the service on its own, so one refusal (e.g. already paused)
        does not undo the others; refusals are reported, and with a single profile the
        refusal is shown on the form instead.
        """
        profiles = list(queryset.select_related("consumer").order_by("pk"))
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done = 0
            for profile in profiles:
                try:
                    apply(profile, form.cleaned_data)
                except DomainError as exc:
                    if len(profiles) == 1:
                        add_domain_error(form, exc)
                        break
                    self.message_user(request, f"{profile.consumer}: {exc.message}", messages.ERROR)
                else:
                    done += 1
            else:
                if done:
                    self.message_user(request, done_message(done), messages.SUCCESS)
                return None  # back to the change list
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "rows": [
                {
                    "profile": profile,
                    "consumer": profile.consumer,
                    "limit": format_cny(profile.credit_limit_amount),
                    "exposure": format_cny(profile.open_exposure_amount),
                    "available": format_cny(profile.available_amount),
                }
                for profile in profiles
            ],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)


@admin.register(LimitChange)
class LimitChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only limit history of every consumer (audit)."""

    list_display = ("created_at", "profile", "reason_code", "before_display", "after_display", "actor")
    list_filter = ("reason_code",)
    search_fields = ("profile__consumer__phone",)
    list_select_related = ("profile__consumer", "actor")
    date_hierarchy = "created_at"
    fields = ("created_at", "profile", "reason_code", "reason", "before_display", "after_display", "actor")
    readonly_fields = fields

    before_display = _money(gettext_lazy("Before"), "before_amount")
    after_display = _money(gettext_lazy("After"), "after_amount")


@admin.register(PromiseRecord)
class PromiseRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """守约记录 of finished orders: written by bnpl through the services, read here."""

    list_display = ("recorded_at", "consumer", "merchant", "order_id", "outcome", "amount_display")
    list_filter = ("outcome",)
    search_fields = ("consumer__phone", "=order_id")
    list_select_related = ("consumer", "merchant")
    date_hierarchy = "recorded_at"
    fields = ("order_id", "consumer", "merchant", "outcome", "amount_display", "recorded_at", "updated_at")
    readonly_fields = fields

    amount_display = _money(gettext_lazy("Amount"), "amount")


# --- Rewards programme (守约激励), read-only: points move only through consumers.rewards ------------


class PointsEntryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PointsEntry
    fields = ("created_at", "kind", "points", "reason", "order_id", "expires_at")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(RewardAccount)
class RewardAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Each consumer's level, promise value, streak and points (the balance is the sum of the entries)."""

    list_display = ("consumer", "level", "promise_value", "streak", "points_balance", "updated_at")
    list_filter = ("level",)
    search_fields = ("consumer__phone",)
    list_select_related = ("consumer",)
    fields = ("consumer", "level", "promise_value", "streak", "best_streak", "points_balance", "expired_through")
    readonly_fields = fields
    inlines = [PointsEntryInline]


@admin.register(PointsEntry)
class PointsEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The append-only points ledger (a database trigger refuses updates and deletes)."""

    list_display = ("created_at", "account", "kind", "points", "reason", "order_id", "expires_at")
    list_filter = ("kind",)
    search_fields = ("account__consumer__phone", "key", "=order_id")
    list_select_related = ("account__consumer",)
    date_hierarchy = "created_at"
    fields = ("account", "kind", "points", "key", "reason", "order_id", "expires_at", "created_at")
    readonly_fields = fields


@admin.register(LevelChange)
class LevelChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "account", "before", "after", "reason")
    list_filter = ("after",)
    search_fields = ("account__consumer__phone",)
    list_select_related = ("account__consumer",)
    fields = ("account", "before", "after", "reason", "created_at")
    readonly_fields = fields
