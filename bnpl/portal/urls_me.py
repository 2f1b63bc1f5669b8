"""/me/: my pay-later. Order pages are ``bnpl.portal.me``; account settings are ``consumers.views``."""

from django.urls import path

from bnpl.notifications import views as notices
from consumers import views as account

from . import me, order_actions, rewards

app_name = "me"

urlpatterns = [
    path("", me.home, name="home"),
    path("orders/", me.orders, name="orders"),
    path("orders/<int:order_id>/", me.order_detail, name="order"),
    path("orders/<int:order_id>/pay/", me.order_pay, name="order_pay"),
    path("orders/<int:order_id>/cancel/", me.order_cancel, name="order_cancel"),
    path("orders/<int:order_id>/report/", order_actions.order_report_problem, name="order_report"),
    path("orders/<int:order_id>/dispute/", order_actions.order_dispute, name="order_dispute"),
    path(
        "orders/<int:order_id>/dispute/withdraw/", order_actions.order_dispute_withdraw, name="order_dispute_withdraw"
    ),
    path("orders/<int:order_id>/extend/", order_actions.order_extend, name="order_extend"),
    path("agreements/", me.agreements, name="agreements"),
    path("agreements/<int:agreement_id>/revoke/", me.agreement_revoke, name="agreement_revoke"),
    path("score/", me.score, name="score"),
    path("payment-methods/", me.payment_methods, name="payment_methods"),
    path("payment-methods/<int:source_id>/default/", me.payment_method_default, name="payment_method_default"),
    path("settings/", account.settings_view, name="settings"),
    path("settings/spend-cap/", account.spend_cap_view, name="spend_cap"),
    path("settings/verify/", account.verify_identity_view, name="verify"),
    path("export/", me.data_export, name="export"),
    path("inbox/", notices.inbox, name="inbox"),
    path("inbox/read/", notices.inbox_mark_read, name="inbox_read_all"),
    path("inbox/<int:notification_id>/read/", notices.inbox_mark_read, name="inbox_read"),
    path("settings/notifications/", notices.preferences, name="notification_preferences"),
    path("rewards/", rewards.rewards, name="rewards"),
]
