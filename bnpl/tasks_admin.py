"""django-q2's pages on the staff admin: schedules, successful and failed tasks, and the ORM broker's queue.

django-q2 registers its admins on ``admin.site``, which is the platform's :class:`bnpl.admin_site.StaffAdminSite`
(``bnpl.admin_config``), so they sit behind the same password + TOTP login and per-model permissions as every
other page. One gap is closed here: django-q2's "resubmit selected tasks" action declares no permission, so Django
offers it to anyone who may merely *view* the task list, and resubmitting runs a job again (a charge run, a payout
send) — and deletes the failure row. The task admins are registered again with that action behind the change
permission. Imported by ``bnpl.admin``, which Django's autodiscovery imports after ``django_q.admin``
(INSTALLED_APPS order).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_q.admin import FailAdmin, TaskAdmin, resubmit_task
from django_q.models import Failure, Success


@admin.action(description=_("Resubmit selected tasks to queue"), permissions=["change"])
def resubmit_selected(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    resubmit_task(modeladmin, request, queryset)


class SuccessAdmin(TaskAdmin):
    actions = [resubmit_selected]


class FailureAdmin(FailAdmin):
    actions = [resubmit_selected]


for _model, _admin_class in ((Success, SuccessAdmin), (Failure, FailureAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin_class)
