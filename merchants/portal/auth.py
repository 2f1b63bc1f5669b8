"""Signing in and out of the merchant portal, and switching merchant for members of several.

Log-in is Django's ``LoginView`` (username or e-mail address and password) behind django-axes, which
locks a username from an address after repeated failures, as on every other log-in of the platform.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from .access import SESSION_MERCHANT_KEY, Capability, member_required, memberships_for


class MemberLoginForm(AuthenticationForm):
    """Username or e-mail address, then password; an e-mail is mapped to its account's username."""

    username = forms.CharField(label=gettext_lazy("Username or e-mail"), max_length=254)

    def clean_username(self) -> str:
        value = self.cleaned_data["username"].strip()
        if "@" in value:
            user = get_user_model().objects.filter(email__iexact=value).order_by("pk").first()
            if user is not None:
                return user.get_username()
        return value


class MemberLoginView(LoginView):
    form_class = MemberLoginForm
    template_name = "merchants/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return reverse("merchant:dashboard")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Log out (POST only) and return to the merchant log-in page."""
    logout(request)
    messages.info(request, _("You have logged out."))
    return redirect("merchant:login")


@member_required(Capability.VIEW)
@require_POST
def switch_merchant_view(request: HttpRequest) -> HttpResponse:
    """Act as another merchant the user is a member of (the choice is kept in the session)."""
    try:
        merchant_id = int(request.POST.get("merchant", ""))
    except ValueError:
        raise Http404 from None
    if not any(member.merchant_id == merchant_id for member in memberships_for(request.user)):
        raise Http404
    request.session[SESSION_MERCHANT_KEY] = merchant_id
    return redirect("merchant:dashboard")


def no_merchant_view(request: HttpRequest) -> HttpResponse:
    """Signed in without a merchant: the page that offers to start onboarding."""
    return render(request, "merchants/no_merchant.html")


urlpatterns = [
    path("login/", MemberLoginView.as_view(), name="login"),
    path("logout/", logout_view, name="logout"),
    path("switch/", switch_merchant_view, name="switch"),
    path("welcome/", no_merchant_view, name="no_merchant"),
]
