"""All merchant-portal routes under one namespace, ``merchant`` (mounted at /merchant/ by ``bnpl/urls.py``).

Each view module owns its routes as a module-level ``urlpatterns`` list; this module only joins them, so
adding a page touches its own module.
"""

from merchants.portal import auth

from . import dashboard

app_name = "merchant"

urlpatterns = [
    *auth.urlpatterns,
    *dashboard.urlpatterns,
]
