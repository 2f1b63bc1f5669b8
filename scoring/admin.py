"""Django admin for admission decisions: a read-only audit of every 事前准入评估.

Decisions are evidence (PIPL art. 24: an automated decision must be explainable),
so the admin can look but never add, change or delete one.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from bnpl.money import format_cny

from .models import AdmissionDecision


def _pretty_json(value: object) -> SafeString:
    # format_html escapes the JSON, so text inside reasons can never become markup.
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False),
    )


@admin.register(AdmissionDecision)
class AdmissionDecisionAdmin(admin.ModelAdmin):
    """Every admission decision with its reasons and the snapshot of inputs it read."""

    list_display = (
        "created_at",
        "consumer",
        "listing",
        "amount_display",
        "channel",
        "outcome",
        "policy_version",
        "latency_ms",
    )
    list_filter = ("outcome", "channel", "policy_version")
    search_fields = ("consumer__phone", "listing__title")
    list_select_related = ("consumer", "listing")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "consumer",
        "listing",
        "amount_display",
        "channel",
        "outcome",
        "policy_version",
        "latency_ms",
        "reasons_display",
        "snapshot_display",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("Amount"), ordering="amount")
    def amount_display(self, obj: AdmissionDecision) -> str:
        return format_cny(obj.amount)

    @admin.display(description=_("Reasons"))
    def reasons_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.reasons)

    @admin.display(description=_("Snapshot"))
    def snapshot_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.snapshot)
