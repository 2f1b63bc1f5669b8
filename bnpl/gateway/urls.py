"""Routes of the sandbox provider's HTTP endpoint; included at ``sandbox/gateway/`` by the root URLconf."""

from django.urls import path

from bnpl.gateway import views

app_name = "sandbox_gateway"

urlpatterns = [
    path("charge", views.charge, name="charge"),
    path("refund", views.refund, name="refund"),
    path("payout", views.payout, name="payout"),
    path("query", views.query, name="query"),
]
