from django.contrib import admin
from django.urls import include, path

from bnpl import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # The sandbox payment provider over HTTP; answers 404 unless BNPL_SANDBOX_HTTP_ENABLED.
    path("sandbox/gateway/", include("bnpl.gateway.urls")),
]
