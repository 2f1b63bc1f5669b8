"""All merchant-portal routes under one namespace, ``merchant`` (mounted at /merchant/ by ``bnpl/urls.py``).

Each view module owns its routes as a module-level ``urlpatterns`` list; this module only joins them, so
adding a page touches its own module.
"""

from merchants.portal import auth
from merchants.portal import developer as merchant_developer
from merchants.portal import listings as merchant_listings
from merchants.portal import onboarding as merchant_onboarding
from merchants.portal import team as merchant_team

from . import campaigns, dashboard, disputes, orders, settlements, tasks

app_name = "merchant"

urlpatterns = [
    *auth.urlpatterns,
    *merchant_onboarding.urlpatterns,
    *merchant_team.urlpatterns,
    *merchant_developer.urlpatterns,
    *merchant_listings.urlpatterns,
    *dashboard.urlpatterns,
    *orders.urlpatterns,
    *tasks.urlpatterns,
    *settlements.urlpatterns,
    *disputes.urlpatterns,
    *campaigns.urlpatterns,
]
