"""The admin app with the platform's own site class (django-otp second factor), see bnpl/admin_site.py.

INSTALLED_APPS names this config instead of ``django.contrib.admin`` so that ``admin.site`` – which every
app's admin module registers on – is a :class:`bnpl.admin_site.StaffAdminSite`.
"""

from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    default_site = "bnpl.admin_site.StaffAdminSite"
