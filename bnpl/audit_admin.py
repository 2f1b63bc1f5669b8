"""Read-only admin of the audit trail (bnpl/models/audit.py), one page per tracked model.

Admin › Pghistory › Middleware events shows every audited change in one list with the user, the URL and the
before/after of each field (``pgh_diff``); these pages list one model's rows. Nobody can add, change or
delete a row here, and the database refuses it too (append-only trigger).
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from pghistory.admin import EventModelAdmin

from bnpl.models.audit import AUDIT_MODELS


class AuditAdmin(EventModelAdmin):
    date_hierarchy = "pgh_created_at"
    ordering = ("-pgh_created_at", "-pgh_id")
    list_select_related = ("pgh_context",)

    def get_list_display(self, request):
        tracked = [f.name for f in self.model._meta.fields if not f.name.startswith("pgh_") and f.name != "id"]
        return ["pgh_created_at", "pgh_label", "pgh_obj_id", *tracked, "acting_user", "request_url"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.display(description=_("User"))
    def acting_user(self, obj) -> str:
        metadata = obj.pgh_context.metadata if obj.pgh_context_id else {}
        return str(metadata.get("user") or "–")

    @admin.display(description=_("URL"))
    def request_url(self, obj) -> str:
        metadata = obj.pgh_context.metadata if obj.pgh_context_id else {}
        return metadata.get("url") or "–"


for _model in AUDIT_MODELS:
    admin.site.register(_model, AuditAdmin)
