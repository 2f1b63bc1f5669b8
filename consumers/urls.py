"""Consumer accounts: log in, log out, sign up (mounted at /account/ by bnpl/urls.py).

The portal's own pages (/me/…) are routed by ``bnpl/portal/urls_me.py``, which also serves the
settings pages of ``consumers.views``.
"""

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("signup/", views.signup_view, name="signup"),
]
