"""Routes of the merchant API under /api/v1/ (mounted in ``bnpl.urls`` with the schema and the docs)."""

from django.urls import path, re_path

from . import part_b, views

app_name = "api"

urlpatterns = [
    path("orders", views.OrderListCreate.as_view(), name="orders"),
    path("orders/by-out-order-no/<str:out_order_no>", views.OrderByOutOrderNo.as_view(), name="order-by-out-no"),
    path("orders/<int:order_id>", views.OrderDetail.as_view(), name="order"),
    path("orders/<int:order_id>/usage", views.OrderUsage.as_view(), name="order-usage"),
    path("orders/<int:order_id>/complete", views.OrderComplete.as_view(), name="order-complete"),
    path("orders/<int:order_id>/cancel", views.OrderCancel.as_view(), name="order-cancel"),
    path("orders/<int:order_id>/sync", views.OrderSync.as_view(), name="order-sync"),
    path("usage/batch", views.UsageBatch.as_view(), name="usage-batch"),
    path("agreements", views.AgreementList.as_view(), name="agreements"),
    path("agreements/<int:agreement_id>", views.AgreementDetail.as_view(), name="agreement"),
    path("agreements/<int:agreement_id>/close", views.AgreementClose.as_view(), name="agreement-close"),
    path("agreement-signups", views.AgreementSignupCreate.as_view(), name="agreement-signups"),
    path("agreement-signups/<int:signup_id>", views.AgreementSignupDetail.as_view(), name="agreement-signup"),
    path("listings", views.ListingListCreate.as_view(), name="listings"),
    path("listings/<int:listing_id>", views.ListingDetail.as_view(), name="listing"),
    path("listings/<int:listing_id>/pause", views.ListingPause.as_view(), name="listing-pause"),
    path("listings/<int:listing_id>/resume", views.ListingResume.as_view(), name="listing-resume"),
    path("orders/<int:order_id>/refunds", part_b.OrderRefund.as_view(), name="order-refund"),
    path("orders/<int:order_id>/modify", part_b.OrderModify.as_view(), name="order-modify"),
    path("orders/<int:order_id>/collect", part_b.OrderCollect.as_view(), name="order-collect"),
    path("settlements", part_b.SettlementList.as_view(), name="settlements"),
    path("settlements/<int:batch_id>/statement", part_b.SettlementStatement.as_view(), name="settlement-statement"),
    path(  # the first route, kept for clients that use it (not in the schema); ``?format=xlsx`` works there too
        "settlements/<int:batch_id>/statement.csv",
        part_b.SettlementStatementCsvPath.as_view(),
        name="settlement-statement-csv",
    ),
    re_path(r"^.*$", views.ApiNotFound.as_view(), name="not-found"),
]
