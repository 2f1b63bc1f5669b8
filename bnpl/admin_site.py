"""The staff admin site: a password and a verified TOTP device (django-otp), see docs/security.md.

``settings.BNPL_ADMIN_REQUIRE_OTP`` is True and is not read from the environment: production cannot
switch the second factor off by configuration. The test suite turns it off for tests of admin features
other than the login (tests/conftest.py) and on again for the tests of the second factor.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

# django-otp's admin login template translates these, but django-otp ships no zh-hans catalogue: marked here so
# that makemessages puts them in ours.
OTP_LOGIN_TEMPLATE_STRINGS = (
    gettext_noop("OTP Token:"),
    gettext_noop("OTP Device:"),
    gettext_noop("Get OTP Challenge"),
)


class StaffLoginForm(OTPAdminAuthenticationForm):
    """Username, password and token in one step: a user with a single device need not pick it first."""

    def _chosen_device(self, user):
        device = super()._chosen_device(user)
        if device is None and not self.cleaned_data.get("otp_device"):
            devices = list(devices_for_user(user, confirmed=True))
            if len(devices) == 1:
                device = devices[0]
        return device


class StaffAdminSite(OTPAdminSite):
    """Admin site that lets in only active staff who signed in with a password *and* a TOTP token."""

    name = "admin"
    site_header = _("Pay-later platform staff")
    site_title = _("Staff admin")
    index_title = _("Today")
    # The landing page: today's dashboard (bnpl/admin_dashboard.py) above the usual list of apps.
    index_template = "admin/bnpl/dashboard.html"

    @property
    def login_form(self):  # type: ignore[override]
        return StaffLoginForm if settings.BNPL_ADMIN_REQUIRE_OTP else AdminAuthenticationForm

    @property
    def login_template(self):  # type: ignore[override]
        return OTPAdminSite.login_template if settings.BNPL_ADMIN_REQUIRE_OTP else None

    def has_permission(self, request: HttpRequest) -> bool:
        if not settings.BNPL_ADMIN_REQUIRE_OTP:
            return request.user.is_active and request.user.is_staff
        return super().has_permission(request)

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The app list, with the dashboard panels this user may see (``admin_view`` has checked the login)."""
        from bnpl.admin_dashboard import dashboard_for  # the models are not loaded when the site class is

        return super().index(request, {"dashboard": dashboard_for(request.user), **(extra_context or {})})
