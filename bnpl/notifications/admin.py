"""Admin of notifications (read-only: rows are written by services) and the "does it work?" report page."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from bnpl.admin_mixins import ReadOnlyAdminMixin

from .models import Delivery, Notification, NotificationPreference, ReminderHoldout
from .report import reminder_report


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    extra = 0
    fields = ["channel", "address", "status", "attempts", "next_attempt_at", "sent_at", "last_error"]
    readonly_fields = fields


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "user", "order", "mandatory", "language", "read_at"]
    list_filter = ["kind", "mandatory", "language"]
    search_fields = ["dedupe_key", "user__username", "subject"]
    date_hierarchy = "created_at"
    list_select_related = ["user", "order"]
    raw_id_fields = ["user", "consumer", "member", "order"]
    inlines = [DeliveryInline]

    def get_urls(self):  # type: ignore[no-untyped-def]
        custom = [
            path(
                "report/",
                self.admin_site.admin_view(self.report_view),
                name="notifications_notification_report",
            )
        ]
        return custom + super().get_urls()

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Does it work? On-time rates of reminded orders vs the control group, and by consumer level."""
        if not self.has_view_permission(request):  # admin_view checks only that the user is staff
            raise PermissionDenied
        try:
            days = max(1, min(int(request.GET.get("days", 90)), 3650))
        except ValueError:
            days = 90
        now = timezone.now()
        report = reminder_report(since=now - timedelta(days=days), until=now)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Do reminders work?"),
            "report": report,
            "days": days,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/notifications/report.html", context)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "channel", "status", "attempts", "next_attempt_at", "notification", "short_error"]
    list_filter = ["status", "channel"]
    search_fields = ["address", "notification__dedupe_key"]
    list_select_related = ["notification"]
    raw_id_fields = ["notification"]

    @admin.display(description=_("Last error"))
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["user", "kind", "channel", "enabled", "updated_at"]
    list_filter = ["kind", "channel", "enabled"]
    raw_id_fields = ["user"]


@admin.register(ReminderHoldout)
class ReminderHoldoutAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["order", "created_at"]
    raw_id_fields = ["order"]
