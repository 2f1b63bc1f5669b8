"""Listings in the merchant portal (/merchant/listings/…): list, create, edit, pause, preview, badge, import.

Reading needs ``Capability.VIEW``; every change needs ``Capability.MANAGE_LISTINGS`` and goes through
the listing services of ``merchants.services`` with an activity-log line in the same transaction (pause
and resume own a durable transaction, so their line follows it). Listings are looked up only under
``request.merchant``: another merchant's id is a 404.

The editor is one form whose pricing-rule fieldset changes with the rule kind (htmx fetches the
fieldset, ``listing_rule_fields``) and whose bill preview is re-rated as the merchant types
(``listing_preview``), both without saving anything.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import messages
from django.core import signing
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bnpl.exceptions import DomainError, ValidationFailed

from ..activity import activity_record
from ..choices import ListingStatus, MerchantTaskKind
from ..models import Listing, Merchant, MerchantMember, MerchantTask
from ..pricing import PricingRuleError, parse_rule
from ..selectors import listing_get_for_merchant, listings_for_merchant
from ..services import listing_create, listing_pause, listing_resume, listing_update
from ..task_runner import Progress, TaskOutcome, merchant_task_start
from .access import Capability, member_required
from .listing_forms import (
    DEFAULT_SAMPLE,
    ListingForm,
    PreviewForm,
    badge_snippet,
    bill_preview,
    listing_initial,
    parse_max_amount,
    rule_errors_to_fields,
)
from .listing_import import (
    MAX_BYTES,
    MAX_ROWS,
    ImportFileError,
    check_rows,
    decode_csv,
    listings_import,
    read_rows,
    sample_csv,
)

PAGE_SIZE = 50
IMPORT_SALT = "merchants.listing-import"
#: A checked file may be imported within this many seconds of its dry run.
IMPORT_TOKEN_MAX_AGE = 60 * 60


def _listing_or_404(request: HttpRequest, listing_id: int) -> Listing:
    try:
        return listing_get_for_merchant(merchant=request.merchant, listing_id=listing_id)  # type: ignore[attr-defined]
    except Listing.DoesNotExist:
        raise Http404 from None


def _catalogue_url(request: HttpRequest, listing: Listing) -> str:
    try:
        return request.build_absolute_uri(reverse("shop:listing", args=[listing.pk]))
    except NoReverseMatch:  # the consumer catalogue is not mounted (a merchants-only deployment)
        return ""


@member_required(Capability.VIEW)
@require_GET
def listings_view(request: HttpRequest) -> HttpResponse:
    """The merchant's listings with status and price in plain words (one query per page)."""
    status = request.GET.get("status", "")
    listings = listings_for_merchant(merchant=request.merchant)  # type: ignore[attr-defined]
    if status in ListingStatus.values:
        listings = listings.filter(status=status)
    page = Paginator(listings, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "status": status,
        "statuses": ListingStatus.choices,
        "query": f"status={status}" if status else "",
    }
    return render(request, "merchants/listings.html", context)


def _preview_context(form: ListingForm, sample_data: Any) -> dict[str, Any]:
    """The preview of what the form's rule would bill for the sample, or why it cannot be rated yet."""
    has_sample = bool(sample_data) and any(key.startswith("sample_") for key in sample_data)
    preview_form = PreviewForm(sample_data if has_sample else None, initial=DEFAULT_SAMPLE)
    sample = preview_form.cleaned_data if has_sample and preview_form.is_valid() else {}
    rule_data, _rows = form.raw_rule()
    unit = form.data.get("unit") if form.kind in ("per_unit", "tiered") else ""
    context: dict[str, Any] = {"preview_form": preview_form, "kind": form.kind, "unit": unit or "hour"}
    try:
        rule = parse_rule(rule_data)
    except PricingRuleError as exc:
        context["preview_errors"] = _labelled(form, rule_errors_to_fields(exc.errors))
        return context
    try:
        context["preview"] = bill_preview(rule, sample, max_amount=parse_max_amount(form.data.get("max_amount")))
    except PricingRuleError as exc:
        context["preview_errors"] = _labelled(form, rule_errors_to_fields(exc.errors))
    return context


def _labelled(form: ListingForm, errors: dict[str, str]) -> list[str]:
    """``{"unit_price": "This field is required."}`` → ``["Price per unit (¥): This field is required."]``."""
    return [
        f"{form.fields[name].label}: {message}" if name in form.fields else message for name, message in errors.items()
    ]


def _editor(request: HttpRequest, form: ListingForm, listing: Listing | None, status: int = 200) -> HttpResponse:
    data = form.data if form.is_bound else form.initial
    context = {"form": form, "listing": listing, **_preview_context(_bound_for_preview(form), data)}
    return render(request, "merchants/listing_form.html", context, status=status)


def _bound_for_preview(form: ListingForm) -> ListingForm:
    return form if form.is_bound else ListingForm(data=form.initial)


def _save(request: HttpRequest, form: ListingForm, listing: Listing | None) -> Listing | None:
    """Create or update through the service with its activity line; None with errors put on the form."""
    fields, tier_rows = form.service_fields()
    try:
        with transaction.atomic():
            if listing is None:
                saved = listing_create(actor=request.user, merchant=request.merchant, **fields)  # type: ignore[attr-defined]
                action = "listing.create"
            else:
                saved = listing_update(actor=request.user, listing=listing, **fields)
                action = "listing.update"
            activity_record(
                merchant=request.merchant,  # type: ignore[attr-defined]
                member=request.member,  # type: ignore[attr-defined]
                action=action,
                target=saved.title,
                detail={"listing": saved.pk, "pricing_rule": saved.pricing_rule, "max_amount": saved.max_amount},
            )
    except ValidationFailed as exc:
        form.add_service_errors(exc.fields or {"__all__": exc.message}, tier_rows)
        return None
    except DomainError as exc:
        form.add_error(None, exc.message)
        return None
    return saved


@member_required(Capability.MANAGE_LISTINGS)
@require_http_methods(["GET", "POST"])
def listing_create_view(request: HttpRequest) -> HttpResponse:
    """A new listing; the first of the merchant's categories is the default scenario."""
    if request.method == "POST":
        form = ListingForm(request.POST)
        refresh = "_refresh" in request.POST  # the no-JavaScript "show the fields of this kind" button
        if not refresh and form.is_valid() and (saved := _save(request, form, None)) is not None:
            messages.success(request, _("Listing “%(title)s” is on sale.") % {"title": saved.title})
            return redirect("merchant:listing", listing_id=saved.pk)
        return _editor(request, form, None)
    categories = request.merchant.categories  # type: ignore[attr-defined]
    initial = {"rule_kind": "per_unit", "unit": "hour", "round_up": True, "confirm_mode": "each_time"}
    if categories:
        initial["scenario"] = categories[0]
    return _editor(request, ListingForm(initial={**initial, "min_score": "550", "order_ttl_minutes": "30"}), None)


@member_required(Capability.MANAGE_LISTINGS)
@require_http_methods(["GET", "POST"])
def listing_edit_view(request: HttpRequest, listing_id: int) -> HttpResponse:
    """Edit a listing; a new price applies to orders placed from now on."""
    listing = _listing_or_404(request, listing_id)
    if request.method == "POST":
        form = ListingForm(request.POST)
        refresh = "_refresh" in request.POST
        if not refresh and form.is_valid() and (saved := _save(request, form, listing)) is not None:
            messages.success(request, _("Listing “%(title)s” saved.") % {"title": saved.title})
            return redirect("merchant:listing", listing_id=saved.pk)
        return _editor(request, form, listing)
    return _editor(request, ListingForm(initial=listing_initial(listing)), listing)


@member_required(Capability.VIEW)
@require_GET
def listing_detail_view(request: HttpRequest, listing_id: int) -> HttpResponse:
    """One listing: its price, a bill preview, the 先享 badge and its embeddable snippet."""
    listing = _listing_or_404(request, listing_id)
    url = _catalogue_url(request, listing)
    form = ListingForm(data=listing_initial(listing))
    context = {
        "listing": listing,
        "form": form,
        "catalogue_url": url,
        "snippet": badge_snippet(listing=listing, url=url) if url else "",
        **_preview_context(form, request.GET or listing_initial(listing)),
    }
    return render(request, "merchants/listing_detail.html", context)


@member_required(Capability.VIEW)
@require_GET
def listing_preview_view(request: HttpRequest) -> HttpResponse:
    """htmx: the bill preview for the rule and sample in the query string (the editor's fields); saves nothing.

    With ``listing=<id>`` the rule is that listing's stored one (the read-only listing page).
    """
    if request.GET.get("listing"):
        listing = _listing_or_404(request, request.GET["listing"])  # type: ignore[arg-type]
        form = ListingForm(data=listing_initial(listing))
    else:
        form = ListingForm(data=request.GET)
    return render(request, "merchants/listing_form.html#preview", _preview_context(form, request.GET))


@member_required(Capability.MANAGE_LISTINGS)
@require_GET
def listing_rule_fields_view(request: HttpRequest) -> HttpResponse:
    """htmx: the rule fieldset of the chosen kind, keeping whatever else was typed."""
    form = ListingForm(data=request.GET)
    return render(
        request, "merchants/listing_form.html#rule_fields", {"form": form, **_preview_context(form, request.GET)}
    )


def _transition(request: HttpRequest, listing_id: int, *, pause: bool) -> HttpResponse:
    listing = _listing_or_404(request, listing_id)
    service = listing_pause if pause else listing_resume
    try:
        changed = service(actor=request.user, listing=listing)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        # The service owns a durable transaction, so the log line is written right after it commits.
        activity_record(
            merchant=request.merchant,  # type: ignore[attr-defined]
            member=request.member,  # type: ignore[attr-defined]
            action="listing.pause" if pause else "listing.resume",
            target=changed.title,
            detail={"listing": changed.pk},
        )
        text = _("“%(title)s” is paused.") if pause else _("“%(title)s” is on sale again.")
        messages.success(request, text % {"title": changed.title})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("merchant:listings")
    return redirect(target)


@member_required(Capability.MANAGE_LISTINGS)
@require_POST
def listing_pause_view(request: HttpRequest, listing_id: int) -> HttpResponse:
    return _transition(request, listing_id, pause=True)


@member_required(Capability.MANAGE_LISTINGS)
@require_POST
def listing_resume_view(request: HttpRequest, listing_id: int) -> HttpResponse:
    return _transition(request, listing_id, pause=False)


# --------------------------------------------------------------------------- bulk import


def import_token(*, merchant_id: int, content: bytes) -> str:
    """A signed copy of a checked file, so "Import" imports exactly what the dry run showed, for this merchant.

    It carries a random id: the import task records it, and a second POST of the same token is refused.
    """
    payload = {"m": merchant_id, "csv": decode_csv(content), "id": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=IMPORT_SALT, compress=True)


def import_token_payload(*, merchant_id: int, token: str) -> tuple[bytes, str]:
    """The file behind a token from :func:`import_token` and the token's id.

    ``signing.BadSignature`` when forged, old, foreign or without an id.
    """
    payload = signing.loads(token, salt=IMPORT_SALT, max_age=IMPORT_TOKEN_MAX_AGE)
    if payload.get("m") != merchant_id or not payload.get("id"):
        raise signing.BadSignature("token of another merchant")
    return payload["csv"].encode("utf-8"), str(payload["id"])


def import_token_content(*, merchant_id: int, token: str) -> bytes:
    """The file behind a token from :func:`import_token`; ``signing.BadSignature`` when forged, old or foreign."""
    return import_token_payload(merchant_id=merchant_id, token=token)[0]


@member_required(Capability.MANAGE_LISTINGS)
@require_http_methods(["GET", "POST"])
def listing_import_view(request: HttpRequest) -> HttpResponse:
    """Upload a CSV and see each row checked (the dry run): nothing is saved here."""
    context: dict[str, Any] = {"max_rows": MAX_ROWS}
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            context["file_error"] = _("Choose a CSV file.")
        elif upload.size is not None and upload.size > MAX_BYTES:  # refused before a byte of it is read
            context["file_error"] = _("The file is larger than 1 MB. Split it into several files.")
        else:
            try:
                content = upload.read()
                rows = check_rows(merchant=request.merchant, rows=read_rows(content))  # type: ignore[attr-defined]
            except ImportFileError as exc:
                context["file_error"] = str(exc)
            else:
                bad = sum(1 for row in rows if not row.ok)
                context.update(rows=rows, bad_count=bad, ok_count=len(rows) - bad, filename=upload.name)
                if not bad:
                    context["token"] = import_token(merchant_id=request.merchant.pk, content=content)  # type: ignore[attr-defined]
    return render(request, "merchants/listings_import.html", context)


@member_required(Capability.MANAGE_LISTINGS)
@require_POST
def listing_import_run_view(request: HttpRequest) -> HttpResponse:
    """Start the import of a checked file in the background and show its progress page."""
    merchant = request.merchant  # type: ignore[attr-defined]
    try:
        content, import_id = import_token_payload(merchant_id=merchant.pk, token=request.POST.get("token", ""))
    except signing.BadSignature:
        messages.error(request, _("The checked file has expired. Upload it again."))
        return redirect("merchant:listing_import")
    with transaction.atomic():
        # One import per checked file: the merchant row lock orders two POSTs of the same token.
        Merchant.objects.select_for_update().filter(pk=merchant.pk).first()
        used = MerchantTask.objects.filter(
            merchant=merchant, kind=MerchantTaskKind.IMPORT_LISTINGS, params__import_id=import_id
        ).exists()
        if not used:
            task = merchant_task_start(
                member=request.member,  # type: ignore[attr-defined]
                kind=MerchantTaskKind.IMPORT_LISTINGS,
                params={"csv": content.decode("utf-8"), "import_id": import_id},
                runner_path="merchants.portal.listings.import_listings_runner",
            )
    if used:
        messages.error(request, _("This checked file was already imported. Upload it again to import it once more."))
        return redirect("merchant:listing_import")
    return redirect(f"{reverse('merchant:task', args=[task.pk])}?back={reverse('merchant:listings')}")


def import_listings_runner(task: MerchantTask, progress: Progress) -> TaskOutcome:
    """The background half of the import (``merchants.task_runner``): all rows in one transaction, or none.

    The rows are checked again here, so a listing changed since the dry run cannot slip a bad row in;
    a refusal fails the task with the service's message.
    """
    member = MerchantMember.objects.filter(merchant=task.merchant, user=task.created_by).first()
    try:
        created = listings_import(
            actor=task.created_by,
            member=member,
            merchant=task.merchant,
            content=task.params["csv"].encode("utf-8"),
            progress=progress,
        )
    except ImportFileError as exc:
        raise ValidationFailed(str(exc), code="import_file_invalid") from exc
    return TaskOutcome(
        summary={"created": len(created), "message": _("%(count)d listings imported.") % {"count": len(created)}}
    )


@member_required(Capability.VIEW)
@require_GET
def listing_import_sample_view(request: HttpRequest) -> HttpResponse:
    """The CSV template: every column, one example row per rule kind."""
    response = HttpResponse(sample_csv(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="listings-template.csv"'
    return response


urlpatterns = [
    path("listings/", listings_view, name="listings"),
    path("listings/new/", listing_create_view, name="listing_create"),
    path("listings/preview/", listing_preview_view, name="listing_preview"),
    path("listings/rule-fields/", listing_rule_fields_view, name="listing_rule_fields"),
    path("listings/import/", listing_import_view, name="listing_import"),
    path("listings/import/run/", listing_import_run_view, name="listing_import_run"),
    path("listings/import/template.csv", listing_import_sample_view, name="listing_import_sample"),
    path("listings/<int:listing_id>/", listing_detail_view, name="listing"),
    path("listings/<int:listing_id>/edit/", listing_edit_view, name="listing_edit"),
    path("listings/<int:listing_id>/pause/", listing_pause_view, name="listing_pause"),
    path("listings/<int:listing_id>/resume/", listing_resume_view, name="listing_resume"),
]
