from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from bnpl import views

urlpatterns = [
    path("", RedirectView.as_view(url="/shop/", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # The sandbox payment provider over HTTP; answers 404 unless BNPL_SANDBOX_HTTP_ENABLED.
    path("sandbox/gateway/", include("bnpl.gateway.urls")),
    # The merchant REST API, its OpenAPI 3 document and the offline reference pages (docs/api.md).
    path("api/v1/", include("bnpl.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a separate file: the CSP runs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Consumer pages (bnpl/portal/__init__.py): the catalogue, the hosted pay pages, my pay-later, accounts.
    path("shop/", include("bnpl.portal.urls_shop")),
    path("pay/", include("bnpl.portal.urls_pay")),
    path("me/", include("bnpl.portal.urls_me")),
    path("account/", include("consumers.urls")),
    # The merchant portal (merchants/portal/__init__.py): one namespace, views in merchants/ and bnpl/.
    path("merchant/", include("bnpl.merchant_portal.urls")),
    # The language switch (POST language=zh-hans|en, next=…): Django's set_language view.
    path("i18n/", include("django.conf.urls.i18n")),
]
