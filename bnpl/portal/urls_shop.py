"""/shop/: the public catalogue."""

from django.urls import path

from . import shop

app_name = "shop"

urlpatterns = [
    path("", shop.catalogue, name="index"),
    path("<int:listing_id>/", shop.listing_detail, name="listing"),
    path("<int:listing_id>/order/", shop.listing_order, name="order"),
    path("<int:listing_id>/sign/", shop.listing_sign, name="sign"),
]
