"""The merchant's dashboard (/merchant/): the first page after log-in."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from merchants.portal.access import Capability, member_required


@member_required(Capability.VIEW)
def dashboard_view(request: HttpRequest) -> HttpResponse:
    return render(request, "merchants/dashboard.html", {"merchant": request.merchant})  # type: ignore[attr-defined]


urlpatterns = [
    path("", dashboard_view, name="dashboard"),
]
