"""Admin building blocks shared by every app's admin (a leaf: imports nothing from the project)."""

from __future__ import annotations

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """View-only: no add, change or delete, because these rows are written by services only."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
