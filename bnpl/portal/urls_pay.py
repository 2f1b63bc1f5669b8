"""/pay/: the hosted confirmation and agreement pages (the links the merchant API returns)."""

from django.urls import path

from . import pay

app_name = "pay"

urlpatterns = [
    path("confirm/<str:token>", pay.confirm, name="confirm"),
    path("agreement/<str:token>", pay.agreement, name="agreement"),
    path("result/<int:order_id>/", pay.result, name="result"),
]
