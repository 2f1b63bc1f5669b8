"""Consumer pages that need only the consumers app: log in, sign up, log out, identity verification
and the personal spend cap, and the ``consumer_required`` guard every consumer page uses.

The pages that show orders, agreements and charges live in ``bnpl.portal`` (``consumers`` must not
import ``bnpl``); ``bnpl/portal/urls_me.py`` routes /me/ to both. Views are thin: bind a form, call
one service, redirect; a refused service comes back as form errors (``add_domain_error``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from bnpl.exceptions import DomainError
from bnpl.ratelimit import client_address, rate_hit

from .forms import (
    ConsumerRegistrationForm,
    IdentityVerificationForm,
    PhoneLoginForm,
    SpendCapForm,
    add_domain_error,
)
from .models import Consumer
from .selectors import consumer_get_for_user
from .services import consumer_register, consumer_verify_identity, credit_spend_cap_set

# A consumer who signs up is logged in at once; naming the backend is required with several configured.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
#: Sign-up attempts (POSTs) allowed from one address per hour; settings may override it.
SIGNUP_RATE_LIMIT = 10
SIGNUP_RATE_WINDOW_S = 3600
HOME_URL_NAME = "me:home"


def consumer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let a signed-in consumer through with ``request.consumer`` set (their profile loaded).

    Anonymous visitors go to the consumer log-in page and come back; a signed-in user who is not a
    consumer (staff, a merchant's team member) gets a 403 page that says so.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("accounts:login"))
        try:
            request.consumer = consumer_get_for_user(user=request.user)  # type: ignore[attr-defined]
        except Consumer.DoesNotExist:
            return render(request, "consumers/not_consumer.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def safe_next(request: HttpRequest, default: str | None = None) -> str:
    """The ``next`` address from the form or query string if it stays on this site, else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default or reverse(HOME_URL_NAME)


@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """Log in by mobile number and password; failed attempts are throttled by django-axes."""
    form = PhoneLoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        login(request, form.get_user())
        return redirect(safe_next(request))
    return render(request, "consumers/login.html", {"form": form, "next": safe_next(request, "")})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Log out (POST only, so a link on another site cannot log anyone out)."""
    logout(request)
    messages.info(request, _("You have logged out."))
    return redirect("shop:index")


def signup_rate_exceeded(request: HttpRequest) -> bool:
    """Count one sign-up attempt from the client's address (as django-axes sees it); True once over the limit."""
    limit = getattr(settings, "CONSUMER_SIGNUP_RATE_LIMIT", SIGNUP_RATE_LIMIT)
    return rate_hit(f"consumer-signup:{client_address(request)}", limit=limit, window_s=SIGNUP_RATE_WINDOW_S)


@sensitive_post_parameters("password", "password_confirm")
@never_cache
@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    """Sign up with a mobile number and a password (``consumer_register``), then log in at once."""
    form = ConsumerRegistrationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and signup_rate_exceeded(request):
        messages.error(request, _("Too many sign-up attempts from your network. Try again in an hour."))
        return render(request, "consumers/signup.html", {"form": form, "next": safe_next(request, "")}, status=429)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            consumer = consumer_register(actor=None, phone=data["phone"], password=data["password"], city=data["city"])
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            login(request, consumer.user, backend=MODEL_BACKEND)
            messages.success(request, _("Welcome! Your pay-later account is open."))
            return redirect(safe_next(request))
    return render(request, "consumers/signup.html", {"form": form, "next": safe_next(request, "")})


@consumer_required
@require_http_methods(["GET"])
def settings_view(request: HttpRequest) -> HttpResponse:
    """Account settings: spend cap, identity verification, data export, language."""
    consumer = request.consumer  # type: ignore[attr-defined]
    profile = consumer.credit_profile
    cap_form = SpendCapForm(initial={"amount": profile.spend_cap_amount or ""})
    return render(
        request,
        "consumers/settings.html",
        {"consumer": consumer, "profile": profile, "cap_form": cap_form},
    )


@consumer_required
@require_POST
def spend_cap_view(request: HttpRequest) -> HttpResponse:
    """Set or clear the personal spend cap (``credit_spend_cap_set``)."""
    consumer = request.consumer  # type: ignore[attr-defined]
    form = SpendCapForm(request.POST)
    if form.is_valid():
        try:
            profile = credit_spend_cap_set(actor=request.user, consumer=consumer, amount=form.cleaned_data["amount"])
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            if profile.spend_cap_amount is None:
                messages.success(request, _("Your personal spend cap is removed."))
            else:
                messages.success(request, _("Your personal spend cap is saved."))
            return redirect("me:settings")
    consumer.refresh_from_db()
    return render(
        request,
        "consumers/settings.html",
        {"consumer": consumer, "profile": consumer.credit_profile, "cap_form": form},
        status=400,
    )


@sensitive_post_parameters("id_number")
@consumer_required
@require_http_methods(["GET", "POST"])
def verify_identity_view(request: HttpRequest) -> HttpResponse:
    """实名认证: bind a real name and resident ID number (``consumer_verify_identity``), once."""
    consumer = request.consumer  # type: ignore[attr-defined]
    form = IdentityVerificationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            consumer_verify_identity(
                actor=request.user,
                consumer=consumer,
                real_name=form.cleaned_data["real_name"],
                id_number=form.cleaned_data["id_number"],
            )
        except DomainError as exc:
            add_domain_error(form, exc)
        else:
            messages.success(request, _("Your identity is verified."))
            return redirect(safe_next(request, reverse("me:settings")))
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "consumers/verify_identity.html",
        {"consumer": consumer, "form": form, "next": safe_next(request, "")},
        status=status,
    )
