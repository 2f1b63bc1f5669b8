"""Django admin for scoring: decisions (read-only audit), scorecards (activate with a reason),
the blocklist (add and lift through services), feature rows, and the monitoring page.

Decisions are evidence (PIPL art. 24: an automated decision must be explainable), so
the admin can look but never add, change or delete one. Scorecards are immutable;
activating one is a service call with a written reason that leaves an event row. The
monitoring and what-if page lives at ``/admin/scoring/scorecard/monitoring/``, staff only.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from bnpl.admin_mixins import ReadOnlyAdminMixin
from bnpl.exceptions import DomainError
from bnpl.money import format_cny
from consumers.models import Consumer

from .choices import BlocklistKind
from .models import AdmissionDecision, BlocklistEntry, ConsumerFeatures, Scorecard, ScorecardEvent
from .monitoring import DEFAULT_PERIOD_DAYS, DEFAULT_WINDOW_DAYS, monitoring_report
from .services import blocklist_add, blocklist_lift, scorecard_activate


def _pretty_json(value: object) -> SafeString:
    # format_html escapes the JSON, so text inside reasons can never become markup.
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False),
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=500)


def _show_domain_error(form: forms.Form, exc: DomainError) -> None:
    placed = False
    for field, message in exc.fields.items():
        if field in form.fields:
            form.add_error(field, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


@admin.register(AdmissionDecision)
class AdmissionDecisionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every admission decision with its score, reasons and the snapshot of inputs it read."""

    list_display = (
        "created_at",
        "consumer",
        "listing",
        "amount_display",
        "channel",
        "outcome",
        "score",
        "scorecard_version",
        "policy_version",
        "latency_ms",
    )
    list_filter = ("outcome", "channel", "policy_version", "scorecard_version")
    search_fields = ("consumer__phone", "listing__title")
    list_select_related = ("consumer", "listing")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "consumer",
        "listing",
        "amount_display",
        "channel",
        "outcome",
        "score",
        "scorecard_version",
        "policy_version",
        "latency_ms",
        "reasons_display",
        "score_reasons_display",
        "sub_scores_display",
        "snapshot_display",
    )
    readonly_fields = fields

    @admin.display(description=gettext_lazy("Amount"), ordering="amount")
    def amount_display(self, obj: AdmissionDecision) -> str:
        return format_cny(obj.amount)

    @admin.display(description=gettext_lazy("Reasons"))
    def reasons_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.reasons)

    @admin.display(description=gettext_lazy("Score reasons"))
    def score_reasons_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.score_reasons)

    @admin.display(description=gettext_lazy("Points by dimension"))
    def sub_scores_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.sub_scores)

    @admin.display(description=gettext_lazy("Snapshot"))
    def snapshot_display(self, obj: AdmissionDecision) -> SafeString:
        return _pretty_json(obj.snapshot)


class ScorecardEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ScorecardEvent
    fields = ("created_at", "kind", "actor", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Scorecard)
class ScorecardAdmin(admin.ModelAdmin):
    """Scorecard versions: their bins, training metrics and history; activate one with a reason."""

    list_display = ("version", "source", "is_active", "auc_display", "ks_display", "created_at", "activated_at")
    list_filter = ("source", "is_active")
    fields = (
        "version",
        "source",
        "is_active",
        "pdo",
        "anchor_score",
        "anchor_odds",
        "created_by",
        "created_at",
        "activated_at",
        "notes",
        "activate_link",
        "metrics_display",
        "spec_display",
    )
    readonly_fields = fields
    inlines = [ScorecardEventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # cards come from the data migration and train_scorecard

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # immutable: activation is its own page

    def _can_activate(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scoring.change_scorecard")

    @admin.display(description=gettext_lazy("AUC"))
    def auc_display(self, obj: Scorecard) -> str:
        return "—" if "auc" not in obj.metrics else f"{obj.metrics['auc']:.3f}"

    @admin.display(description=gettext_lazy("KS"))
    def ks_display(self, obj: Scorecard) -> str:
        return "—" if "ks" not in obj.metrics else f"{obj.metrics['ks']:.3f}"

    @admin.display(description=gettext_lazy("Training metrics"))
    def metrics_display(self, obj: Scorecard) -> SafeString:
        return _pretty_json(obj.metrics)

    @admin.display(description=gettext_lazy("Bins and points"))
    def spec_display(self, obj: Scorecard) -> SafeString:
        return _pretty_json(obj.spec)

    @admin.display(description=gettext_lazy("Activate"))
    def activate_link(self, obj: Scorecard) -> str | SafeString:
        if obj.is_active:
            return _("This scorecard is active.")
        url = reverse("admin:scoring_scorecard_activate", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, _("Activate this scorecard…"))

    def get_urls(self):
        own = [
            path(
                "monitoring/",
                self.admin_site.admin_view(self.monitoring_view),
                name="scoring_monitoring",
            ),
            path(
                "<int:pk>/activate/",
                self.admin_site.admin_view(self.activate_view),
                name="scoring_scorecard_activate",
            ),
        ]
        return own + super().get_urls()

    def activate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Ask for a reason, then activate the card through ``scorecard_activate`` (audited)."""
        if not self._can_activate(request):
            raise PermissionDenied
        card = get_object_or_404(Scorecard, pk=pk)
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                scorecard_activate(actor=request.user, scorecard=card, reason=form.cleaned_data["reason"])
            except DomainError as exc:
                _show_domain_error(form, exc)
            else:
                self.message_user(request, _("Scorecard %(version)s is now active.") % {"version": card.version})
                return HttpResponseRedirect(reverse("admin:scoring_scorecard_change", args=[card.pk]))
        active = Scorecard.objects.filter(is_active=True).first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Activate scorecard %(version)s") % {"version": card.version},
            "card": card,
            "active": active,
            "form": form,
        }
        return TemplateResponse(request, "admin/scoring/activate_scorecard.html", context)

    def monitoring_view(self, request: HttpRequest) -> HttpResponse:
        """Score distribution, approval and breach by band, PSI and the policy simulator."""
        if not request.user.has_perm("scoring.view_admissiondecision"):
            raise PermissionDenied
        form = MonitoringForm(request.GET or None)
        params = form.cleaned_data if form.is_valid() else {}
        report = monitoring_report(
            days=params.get("days") or DEFAULT_PERIOD_DAYS,
            window_days=params.get("window_days") or DEFAULT_WINDOW_DAYS,
            min_score=params.get("min_score"),
            limit_factor=params.get("limit_factor") or Decimal("1"),
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Scoring monitoring and what-if"),
            "form": form if form.is_bound else MonitoringForm(),
            **report,
        }
        return TemplateResponse(request, "admin/scoring/monitoring.html", context)


class MonitoringForm(forms.Form):
    days = forms.IntegerField(label=gettext_lazy("Days"), min_value=1, max_value=365, required=False)
    window_days = forms.IntegerField(
        label=gettext_lazy("Performance window (days)"), min_value=1, max_value=365, required=False
    )
    min_score = forms.IntegerField(label=gettext_lazy("Minimum score"), min_value=350, max_value=950, required=False)
    limit_factor = forms.DecimalField(
        label=gettext_lazy("Limit factor"),
        min_value=Decimal("0.1"),
        max_value=Decimal("5"),
        decimal_places=2,
        required=False,
        help_text=gettext_lazy("Replay with every limit multiplied by this factor (1 = as it was)."),
    )

    def clean_limit_factor(self) -> Decimal | None:
        value = self.cleaned_data.get("limit_factor")
        try:
            return Decimal(value) if value is not None else None
        except InvalidOperation:
            raise forms.ValidationError(_("Enter a number.")) from None


class BlocklistAddForm(forms.Form):
    kind = forms.ChoiceField(label=gettext_lazy("Kind"), choices=BlocklistKind.choices)
    consumer = forms.ModelChoiceField(
        label=gettext_lazy("Consumer"),
        queryset=Consumer.objects.all(),
        required=False,
        widget=forms.NumberInput,
        help_text=gettext_lazy("The consumer's id (required for an account or resident-ID block)."),
    )
    value = forms.CharField(
        label=gettext_lazy("Phone number"),
        required=False,
        max_length=20,
        help_text=gettext_lazy("For a phone block without a consumer."),
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=500)


@admin.register(BlocklistEntry)
class BlocklistEntryAdmin(admin.ModelAdmin):
    """The blocklist: add with a reason, lift with a reason; entries are never edited or deleted."""

    list_display = ("created_at", "kind", "masked_value", "consumer", "reason", "created_by", "lifted_at")
    list_filter = ("kind", ("lifted_at", admin.EmptyFieldListFilter))
    list_select_related = ("consumer", "created_by")
    fields = (
        "kind",
        "masked_value",
        "consumer",
        "reason",
        "created_by",
        "created_at",
        "lifted_at",
        "lifted_by",
        "lift_reason",
    )
    readonly_fields = fields
    actions = ["lift"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Gates the lift action on the list; a single entry's page is view-only.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=gettext_lazy("Value"))
    def masked_value(self, obj: BlocklistEntry) -> str:
        if obj.kind == BlocklistKind.PHONE and len(obj.value) == 11:
            return f"{obj.value[:3]}****{obj.value[-4:]}"
        if obj.kind == BlocklistKind.ID_HASH:
            return f"{obj.value[:8]}…"
        return obj.value

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        """Adding goes through ``blocklist_add`` (reason required), never the model form's save()."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = BlocklistAddForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                blocklist_add(
                    actor=request.user,
                    kind=data["kind"],
                    consumer=data["consumer"],
                    value=data["value"] or None,
                    reason=data["reason"],
                )
            except DomainError as exc:
                _show_domain_error(form, exc)
            else:
                self.message_user(request, _("Added to the blocklist."))
                return HttpResponseRedirect(reverse("admin:scoring_blocklistentry_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Add to the blocklist"),
            "form": form,
            "intro": _("Blocked consumers are declined at every admission with the reason shown to them."),
        }
        return TemplateResponse(request, "admin/scoring/reason_form.html", context)

    @admin.action(description=gettext_lazy("Lift the block (with a reason)"), permissions=["change"])
    def lift(self, request: HttpRequest, queryset: QuerySet[BlocklistEntry]) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            lifted = 0
            for entry in queryset:
                try:
                    blocklist_lift(actor=request.user, entry=entry, reason=form.cleaned_data["reason"])
                    lifted += 1
                except DomainError as exc:
                    self.message_user(request, f"{entry}: {exc.message}", level=messages.ERROR)
            if lifted:
                self.message_user(request, _("Lifted %(count)d block(s).") % {"count": lifted})
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Lift blocks"),
            "form": form,
            "rows": list(queryset),
            "action": "lift",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/scoring/reason_form.html", context)


@admin.register(ConsumerFeatures)
class ConsumerFeaturesAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The per-consumer feature rows (what the next decision will read)."""

    list_display = (
        "consumer",
        "fulfilled_count",
        "breached_count",
        "recovered_count",
        "open_orders",
        "orders_total",
        "last_order_at",
    )
    list_select_related = ("consumer",)
    search_fields = ("consumer__phone",)
