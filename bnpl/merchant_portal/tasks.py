"""Progress of background work (``MerchantTask``): /merchant/tasks/<id>/ and its download.

Start a task with ``merchants.task_runner.merchant_task_start`` (see that module for the runner contract) and
redirect to ``merchant:task``. The page polls itself with htmx every second (``#progress`` partial) until the
task has ended, then shows the summary, the error or the download link. Tasks are scoped to the member's
merchant: another merchant's id is a 404. Following a task or downloading its file needs the capability that
starts its kind (:data:`TASK_CAPABILITY`): an order export is for those who manage orders, not every viewer.
"""

from __future__ import annotations

import os

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from merchants.choices import MemberRole, MerchantTaskKind, MerchantTaskStatus
from merchants.models import MerchantTask
from merchants.portal.access import CAPABILITY_ROLES, Capability, member_can, member_required
from merchants.task_runner import merchant_task_fail_if_stale

FINISHED = frozenset({MerchantTaskStatus.SUCCEEDED, MerchantTaskStatus.FAILED})


#: The capability that starts each kind of task; following it or downloading its file needs the same.
TASK_CAPABILITY: dict[str, Capability] = {
    MerchantTaskKind.EXPORT_ORDERS: Capability.MANAGE_ORDERS,
    MerchantTaskKind.IMPORT_LISTINGS: Capability.MANAGE_LISTINGS,
}


class _TaskForbidden(Exception):
    def __init__(self, capability: Capability):
        self.capability = capability


def _task_or_404(request: HttpRequest, task_id: int) -> MerchantTask:
    """The member's merchant's task; raises :class:`_TaskForbidden` when the role may not start its kind."""
    task = get_object_or_404(MerchantTask, pk=task_id, merchant=request.merchant)  # type: ignore[attr-defined]
    capability = TASK_CAPABILITY.get(task.kind, Capability.MANAGE_ACCOUNT)  # an unknown kind: owners only
    if not member_can(request.member, capability):  # type: ignore[attr-defined]
        raise _TaskForbidden(capability)
    return task


def _forbidden(request: HttpRequest, capability: Capability) -> HttpResponse:
    allowed = [MemberRole(role).label for role in MemberRole if role in CAPABILITY_ROLES[capability]]
    return render(
        request,
        "merchants/forbidden.html",
        {"allowed_roles": allowed, "member": request.member},  # type: ignore[attr-defined]
        status=403,
    )


@member_required(Capability.VIEW)
@require_GET
def task_view(request: HttpRequest, task_id: int) -> HttpResponse:
    try:
        task = merchant_task_fail_if_stale(_task_or_404(request, task_id))
    except _TaskForbidden as exc:
        return _forbidden(request, exc.capability)
    back = request.GET.get("back", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = ""
    labels = {
        "rows": _("Rows"),
        "created": _("Created"),
        "updated": _("Updated"),
        "skipped": _("Skipped"),
        "errors": _("Errors"),
    }
    summary = [
        (labels.get(key, key), value)
        for key, value in (task.result or {}).items()
        if key != "message" and not key.startswith("_") and not isinstance(value, (list, dict))
    ]
    context = {
        "task": task,
        "finished": task.status in FINISHED,
        "back_url": back,
        "summary": summary,
        "message": (task.result or {}).get("message", ""),  # a runner's one-line summary, already translated
    }
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "merchants/task.html#progress", context)
    return render(request, "merchants/task.html", context)


@member_required(Capability.VIEW)
@require_GET
def task_download(request: HttpRequest, task_id: int) -> HttpResponse:
    try:
        task = _task_or_404(request, task_id)
    except _TaskForbidden as exc:
        return _forbidden(request, exc.capability)
    if task.status != MerchantTaskStatus.SUCCEEDED or not task.result_file:
        raise Http404
    return FileResponse(
        task.result_file.open("rb"), as_attachment=True, filename=os.path.basename(task.result_file.name)
    )


urlpatterns = [
    path("tasks/<int:task_id>/", task_view, name="task"),
    path("tasks/<int:task_id>/download/", task_download, name="task_download"),
]
