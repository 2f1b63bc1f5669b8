"""Opening a merchant account: sign-up, the onboarding wizard (KYB application) and the status page.

* ``signup/`` creates the applicant's login (username, e-mail, mobile number, password) and signs them in.
  It is throttled per address (:data:`SIGNUP_RATE_LIMIT` attempts an hour), on top of django-axes on log-in.
* ``onboarding/<step>/`` is the application, one step per page: company, legal representative, contact,
  business scenarios, settlement account, then the fee terms and the submission. Each step saves at once
  (the first opens a draft through ``merchant_application_start``, the others go through
  ``merchant_update_application``), so an applicant can stop and come back; a refused step is shown
  again with what was typed and the message next to each field. The USCC is checked as it is typed.
* ``account/`` says where the application stands: not submitted, under review (待审核), rejected
  (已驳回, with the reviewer's reason and the way back into the wizard) or approved (已通过).

Only an owner may edit or submit (``Capability.MANAGE_ACCOUNT``); every member may read the status page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.exceptions import DomainError, ValidationFailed
from bnpl.ratelimit import client_address, rate_hit

from ..activity import activity_record
from ..choices import MerchantStatus
from ..forms import APPLICABLE_CATEGORY_CHOICES, add_domain_errors
from ..models import Merchant
from ..services import (
    APPLICATION_FIELDS,
    EDITABLE_STATUSES,
    merchant_applicant_register,
    merchant_application_clean,
    merchant_application_start,
    merchant_submit,
    merchant_update_application,
)
from .access import Capability, current_membership, member_required

# A user who signs up is logged in at once; naming the backend is required with several configured.
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
SESSION_PHONE_KEY = "merchant_signup_phone"
#: Sign-up attempts (POSTs) allowed from one address per hour; settings may override it.
SIGNUP_RATE_LIMIT = 10
SIGNUP_RATE_WINDOW_S = 3600


# --------------------------------------------------------------------------- forms


class SignupForm(forms.Form):
    """The applicant's login; the service checks uniqueness and password strength for real."""

    username = forms.CharField(
        label=gettext_lazy("Username"), max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"})
    )
    email = forms.EmailField(label=gettext_lazy("E-mail"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    phone = forms.CharField(
        label=gettext_lazy("Mobile number"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "tel", "inputmode": "tel"}),
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("At least 8 characters, not only digits."),
    )
    password_confirm = forms.CharField(
        label=gettext_lazy("Password again"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("password") != cleaned.get("password_confirm"):
            self.add_error("password_confirm", _("The two passwords differ."))
        return cleaned


class StepForm(forms.Form):
    """A wizard step: after the fields' own checks, the service's checks, so every problem shows at once."""

    def __init__(self, *args: Any, merchant: Merchant | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.merchant = merchant

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        data = {name: cleaned[name] for name in self.fields if name in cleaned and name in APPLICATION_FIELDS}
        try:
            merchant_application_clean(data=data, merchant=self.merchant, partial=True)
        except ValidationFailed as exc:
            add_domain_errors(self, exc)
        return cleaned


class CompanyForm(StepForm):
    # Wider than the column: people paste a USCC with spaces; the service normalises it.
    legal_name = forms.CharField(label=gettext_lazy("Legal name"), max_length=200)
    display_name = forms.CharField(
        label=gettext_lazy("Display name"),
        max_length=100,
        help_text=gettext_lazy("The shop name consumers see next to the pay-later badge."),
    )
    uscc = forms.CharField(
        label=gettext_lazy("Unified social credit code (USCC)"),
        max_length=40,
        help_text=gettext_lazy("18 characters, on the business licence."),
    )
    city = forms.CharField(label=gettext_lazy("City"), max_length=50, required=False)


class LegalForm(StepForm):
    legal_representative = forms.CharField(
        label=gettext_lazy("Legal representative"),
        max_length=50,
        help_text=gettext_lazy("As written on the business licence."),
    )


class ContactForm(StepForm):
    contact_name = forms.CharField(label=gettext_lazy("Contact person"), max_length=50)
    contact_phone = forms.CharField(
        label=gettext_lazy("Contact phone"), max_length=20, widget=forms.TextInput(attrs={"inputmode": "tel"})
    )
    contact_email = forms.EmailField(label=gettext_lazy("Contact e-mail"), required=False)


class CategoriesForm(StepForm):
    categories = forms.MultipleChoiceField(
        label=gettext_lazy("Business scenarios"),
        choices=APPLICABLE_CATEGORY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Your listings can only belong to the scenarios chosen here."),
        error_messages={"required": gettext_lazy("Choose at least one business category.")},
    )


class BankForm(StepForm):
    settlement_bank_name = forms.CharField(
        label=gettext_lazy("Bank and branch"), max_length=100, help_text=gettext_lazy("E.g. 招商银行杭州分行.")
    )
    settlement_account_name = forms.CharField(
        label=gettext_lazy("Account name"),
        max_length=200,
        help_text=gettext_lazy("A corporate account in the company's legal name."),
    )
    settlement_account_number = forms.CharField(
        label=gettext_lazy("Account number"), max_length=50, widget=forms.TextInput(attrs={"inputmode": "numeric"})
    )


@dataclass(frozen=True)
class Step:
    slug: str
    title: Any
    form_class: type[StepForm] | None
    fields: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step("company", gettext_lazy("Company"), CompanyForm, ("legal_name", "display_name", "uscc", "city")),
    Step("legal", gettext_lazy("Legal representative"), LegalForm, ("legal_representative",)),
    Step("contact", gettext_lazy("Contact"), ContactForm, ("contact_name", "contact_phone", "contact_email")),
    Step("categories", gettext_lazy("Scenarios"), CategoriesForm, ("categories",)),
    Step(
        "bank",
        gettext_lazy("Settlement account"),
        BankForm,
        ("settlement_bank_name", "settlement_account_name", "settlement_account_number"),
    ),
    Step("review", gettext_lazy("Fee terms and submit"), None, ()),
)
STEP_BY_SLUG = {step.slug: step for step in STEPS}
STEP_OF_FIELD = {name: step for step in STEPS for name in step.fields}


# --------------------------------------------------------------------------- helpers


def applicant_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in; then either no merchant yet (``request.merchant`` None: may start one) or an owner's."""
    guarded = member_required(Capability.MANAGE_ACCOUNT)(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("merchant:login"))
        if current_membership(request) is None:
            request.member = None  # type: ignore[attr-defined]
            request.merchant = None  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)
        return guarded(request, *args, **kwargs)

    wrapper.capability = Capability.MANAGE_ACCOUNT  # type: ignore[attr-defined]
    return wrapper


def signup_rate_exceeded(request: HttpRequest) -> bool:
    """Count one sign-up attempt from the request's address; True once over the hourly limit.

    A fixed window in the default cache (``bnpl.ratelimit``): cheap, and enough to stop a script opening
    accounts in bulk (per process with the local-memory cache, shared with Redis). The address is the one
    django-axes uses for log-in lock-outs, so it honours ``BNPL_TRUSTED_PROXY_COUNT`` behind a proxy.
    """
    limit = getattr(settings, "MERCHANT_SIGNUP_RATE_LIMIT", SIGNUP_RATE_LIMIT)
    return rate_hit(f"merchant-signup:{client_address(request)}", limit=limit, window_s=SIGNUP_RATE_WINDOW_S)


def application_problems(merchant: Merchant) -> dict[str, str]:
    """What still keeps the application from review: field → message (empty when it can be submitted)."""
    try:
        merchant_application_clean(
            data={name: getattr(merchant, name) for name in APPLICATION_FIELDS}, merchant=merchant
        )
    except ValidationFailed as exc:
        return dict(exc.fields)
    return {}


def _step_initial(request: HttpRequest, merchant: Merchant | None, step: Step) -> dict[str, Any]:
    if merchant is None:
        return {}
    initial = {name: getattr(merchant, name) for name in step.fields}
    if step.slug == "contact":
        initial["contact_phone"] = merchant.contact_phone or request.session.get(SESSION_PHONE_KEY, "")
        initial["contact_email"] = merchant.contact_email or request.user.email
    if step.slug == "bank" and not merchant.settlement_account_name:
        initial["settlement_account_name"] = merchant.legal_name
    return initial


def fee_percent(merchant: Merchant) -> str:
    """The fee rate as people read it: ``0.0060`` → ``0.6``."""
    text = f"{merchant.fee_rate * 100:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _next_step(step: Step) -> Step:
    return STEPS[min(STEPS.index(step) + 1, len(STEPS) - 1)]


def _steps_context(merchant: Merchant | None, current: Step) -> list[dict[str, Any]]:
    problems = application_problems(merchant) if merchant is not None else {}
    rows = []
    for step in STEPS:
        complete = merchant is not None and step.form_class is not None and not any(f in problems for f in step.fields)
        rows.append({"step": step, "current": step == current, "complete": complete})
    return rows


# --------------------------------------------------------------------------- views


@sensitive_post_parameters("password", "password_confirm")
@never_cache
@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    """Open a merchant login (``merchant_applicant_register``), sign in, and go on to the application."""
    if request.user.is_authenticated:
        return redirect("merchant:onboarding")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if signup_rate_exceeded(request):
            messages.error(request, _("Too many sign-up attempts from your network. Try again in an hour."))
            return render(request, "merchants/signup.html", {"form": form}, status=429)
        if form.is_valid():
            data = form.cleaned_data
            try:
                user = merchant_applicant_register(
                    actor=None,
                    username=data["username"],
                    email=data["email"],
                    phone=data["phone"],
                    password=data["password"],
                )
            except DomainError as exc:
                add_domain_errors(form, exc)
            else:
                login(request, user, backend=MODEL_BACKEND)
                request.session[SESSION_PHONE_KEY] = user.applicant_phone
                messages.success(request, _("Your login is ready. Now tell us about your business."))
                return redirect("merchant:onboarding")
    return render(request, "merchants/signup.html", {"form": form})


@applicant_required
@require_GET
def onboarding_view(request: HttpRequest) -> HttpResponse:
    """The wizard's entry: the first step still missing something (the company step for a new applicant)."""
    merchant = request.merchant  # type: ignore[attr-defined]
    if merchant is None:
        return redirect("merchant:onboarding_step", step="company")
    if merchant.status not in EDITABLE_STATUSES:
        return redirect("merchant:account")
    problems = application_problems(merchant)
    for step in STEPS:
        if any(name in problems for name in step.fields):
            return redirect("merchant:onboarding_step", step=step.slug)
    return redirect("merchant:onboarding_step", step="review")


@sensitive_post_parameters("settlement_account_number")
@applicant_required
@require_http_methods(["GET", "POST"])
def onboarding_step_view(request: HttpRequest, step: str) -> HttpResponse:
    """One step of the application: show it filled in, save it, go on to the next step."""
    current = STEP_BY_SLUG.get(step)
    if current is None:
        raise Http404
    merchant: Merchant | None = request.merchant  # type: ignore[attr-defined]
    if merchant is None and current.slug != "company":
        return redirect("merchant:onboarding_step", step="company")
    if merchant is not None and merchant.status not in EDITABLE_STATUSES:
        messages.info(
            request,
            _("The application is %(status)s and cannot be edited.") % {"status": merchant.get_status_display()},
        )
        return redirect("merchant:account")
    if current.form_class is None:
        return _review(request, merchant, current)
    form = current.form_class(
        request.POST if request.method == "POST" else None,
        initial=_step_initial(request, merchant, current),
        merchant=merchant,
    )
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in current.fields}
        try:
            with transaction.atomic():
                if merchant is None:
                    merchant = merchant_application_start(actor=request.user, **values)
                    activity_record(
                        merchant=merchant,
                        member=merchant.members.get(user=request.user),
                        action="application.start",
                        target=merchant.legal_name,
                    )
                else:
                    merchant_update_application(actor=request.user, merchant=merchant, **values)
                    activity_record(
                        merchant=merchant,
                        member=request.member,  # type: ignore[attr-defined]
                        action="application.update",
                        target=str(current.title),
                        detail={"step": current.slug},
                    )
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            return redirect("merchant:onboarding_step", step=_next_step(current).slug)
    return render(
        request,
        "merchants/onboarding.html",
        {
            "form": form,
            "step": current,
            "steps": _steps_context(merchant, current),
            "previous": STEPS[STEPS.index(current) - 1] if STEPS.index(current) else None,
            "merchant": merchant,
        },
    )


def _review(request: HttpRequest, merchant: Merchant, current: Step) -> HttpResponse:
    problems = application_problems(merchant)
    missing = [
        {"field": Merchant._meta.get_field(name).verbose_name, "message": message, "step": STEP_OF_FIELD.get(name)}
        for name, message in problems.items()
    ]
    return render(
        request,
        "merchants/onboarding_review.html",
        {
            "merchant": merchant,
            "step": current,
            "steps": _steps_context(merchant, current),
            "missing": missing,
            "fee_percent": fee_percent(merchant),
            "categories": [label for value, label in APPLICABLE_CATEGORY_CHOICES if value in merchant.categories],
        },
    )


@applicant_required
@require_GET
def onboarding_check_uscc_view(request: HttpRequest) -> HttpResponse:
    """htmx: check the USCC being typed (check character, not already registered) and say so under the field."""
    value = request.GET.get("uscc", "").strip()
    merchant = request.merchant  # type: ignore[attr-defined]
    error = ""
    if value:
        try:
            merchant_application_clean(data={"uscc": value}, merchant=merchant, partial=True)
        except ValidationFailed as exc:
            error = exc.fields.get("uscc", exc.message)
    return render(request, "merchants/onboarding.html#uscc_feedback", {"uscc_value": value, "uscc_error": error})


@applicant_required
@require_POST
def onboarding_submit_view(request: HttpRequest) -> HttpResponse:
    """Send the application for review (``draft|rejected → submitted``)."""
    merchant = request.merchant  # type: ignore[attr-defined]
    if merchant is None:
        return redirect("merchant:onboarding_step", step="company")
    try:
        merchant_submit(actor=request.user, merchant=merchant)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("merchant:onboarding_step", step="review")
    # merchant_submit owns a durable transaction, so the log line follows it rather than sharing it.
    activity_record(
        merchant=merchant,
        member=request.member,  # type: ignore[attr-defined]
        action="application.submit",
        target=merchant.legal_name,
    )
    messages.success(request, _("Your application was submitted. We usually review it within one working day."))
    return redirect("merchant:account")


@member_required(Capability.VIEW)
@require_GET
def account_view(request: HttpRequest) -> HttpResponse:
    """Where the application stands, what the reviewer said, and the application as submitted."""
    merchant = Merchant.objects.get(pk=request.merchant.pk)  # type: ignore[attr-defined]  # fresh status
    pause = (
        merchant.events.filter(to_status=MerchantStatus.SUSPENDED).order_by("-created_at", "-id").first()
        if merchant.status == MerchantStatus.SUSPENDED
        else None
    )
    return render(
        request,
        "merchants/account.html",
        {
            "merchant": merchant,
            "editable": merchant.status in EDITABLE_STATUSES,
            "problems": application_problems(merchant) if merchant.status in EDITABLE_STATUSES else {},
            "fee_percent": fee_percent(merchant),
            "categories": [label for value, label in APPLICABLE_CATEGORY_CHOICES if value in merchant.categories],
            "steps": [step for step in STEPS if step.form_class is not None],
            "statuses": MerchantStatus,
            "pause_reason": pause.reason if pause else "",
        },
    )


urlpatterns = [
    path("signup/", signup_view, name="signup"),
    path("onboarding/", onboarding_view, name="onboarding"),
    path("onboarding/check-uscc/", onboarding_check_uscc_view, name="onboarding_check_uscc"),
    path("onboarding/submit/", onboarding_submit_view, name="onboarding_submit"),
    path("onboarding/<slug:step>/", onboarding_step_view, name="onboarding_step"),
    path("account/", account_view, name="account"),
]
