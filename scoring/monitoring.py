"""Monitoring and what-if for staff: score distribution, approval and breach by band, PSI, policy simulator.

Reads only (selectors in all but name; kept apart from ``selectors.py`` because it is
one page's worth of aggregation). Aggregates run in SQL (GROUP BY with conditional
counts), so the page's query count does not grow with the number of decisions; the
simulator reads at most :data:`SIMULATION_LIMIT` recent decisions' few fields.

**Breach** of a decision: the consumer has a promise record that went bad (breached,
or breached then recovered) within the performance window after the decision, the
same label training uses. Decisions younger than the window are still "maturing":
their breach is not known yet.

**Simulator.** Replays stored order decisions under another platform minimum score
and another limit rule (the limit scaled by a factor). Every other rule keeps its
stored result (a paused or blocklisted consumer stays declined). For a decision the
replay approves, the breach is the observed one when the decision was really
approved and has matured; otherwise it is estimated from the score's odds on the
platform scale (``bad_rate_for_score``), and the table says how much of each figure is
observed.

Charts are inline SVG drawn here (no JavaScript library, nothing fetched at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from consumers.choices import BAND_FLOORS, PromiseOutcome, ScoreBand
from consumers.models import PromiseRecord

from .choices import ORDER_CHANNELS, DecisionOutcome, ReasonCode
from .models import AdmissionDecision, Scorecard
from .policy import active_policy
from .scorecard import bad_rate_for_score
from .stats import BUCKET_EDGES, BUCKET_LABELS, psi

DEFAULT_PERIOD_DAYS = 30
DEFAULT_WINDOW_DAYS = 90
SIMULATION_LIMIT = 50_000
SIMULATED_MIN_SCORES: tuple[int, ...] = tuple(range(450, 751, 25))
# Rules the simulator changes; every other failed rule keeps a decision declined.
SIMULATED_RULES = frozenset({ReasonCode.SCORE_BELOW_MINIMUM.value, ReasonCode.INSUFFICIENT_LIMIT.value})


def _went_bad(window: timedelta) -> Exists:
    return Exists(
        PromiseRecord.objects.filter(
            consumer=OuterRef("consumer"),
            outcome__in=[PromiseOutcome.BREACHED, PromiseOutcome.RECOVERED],
            recorded_at__gt=OuterRef("created_at"),
            recorded_at__lte=ExpressionWrapper(
                OuterRef("created_at") + Value(window, output_field=DurationField()), output_field=DateTimeField()
            ),
        )
    )


def _band_case() -> Case:
    whens = [When(score__gte=floor, then=Value(str(band))) for floor, band in BAND_FLOORS]
    return Case(*whens, default=Value(""))


def _bucket_case() -> Case:
    whens = [
        When(score__gte=low, score__lt=high, then=Value(index))
        for index, (low, high) in enumerate(pairwise(BUCKET_EDGES))
    ]
    return Case(*whens, default=Value(-1), output_field=IntegerField())


@dataclass(frozen=True)
class BandRow:
    band: str
    label: str
    decisions: int
    approved: int
    matured: int
    breached: int

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decisions if self.decisions else None

    @property
    def breach_rate(self) -> float | None:
        return self.breached / self.matured if self.matured else None


@dataclass(frozen=True)
class SimulationRow:
    min_score: int
    approved: int
    approval_rate: float
    breach_rate: float | None
    observed_share: float | None
    chosen: bool


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def band_table(decisions: Any, *, now: datetime, window: timedelta) -> list[BandRow]:
    """Decisions, approvals and (among matured approvals) breaches by score band."""
    matured = Q(outcome=DecisionOutcome.APPROVED, created_at__lte=now - window)
    rows = (
        decisions.filter(score__isnull=False)
        .annotate(band=_band_case(), bad=_went_bad(window))
        .values("band")
        .annotate(
            n=Count("pk"),
            approved=Count("pk", filter=Q(outcome=DecisionOutcome.APPROVED)),
            matured=Count("pk", filter=matured),
            breached=Count("pk", filter=matured & Q(bad=True)),
        )
    )
    by_band = {row["band"]: row for row in rows}
    table = []
    for _floor, band in BAND_FLOORS:
        row = by_band.get(str(band), {})
        table.append(
            BandRow(
                band=str(band),
                label=str(ScoreBand(band).label),
                decisions=row.get("n", 0),
                approved=row.get("approved", 0),
                matured=row.get("matured", 0),
                breached=row.get("breached", 0),
            )
        )
    return table


def score_histogram(decisions: Any) -> dict[str, int]:
    """Number of decisions per score bucket (every bucket present)."""
    counts = dict.fromkeys(BUCKET_LABELS, 0)
    rows = (
        decisions.filter(score__isnull=False).annotate(bucket=_bucket_case()).values("bucket").annotate(n=Count("pk"))
    )
    for row in rows:
        if 0 <= row["bucket"] < len(BUCKET_LABELS):
            counts[BUCKET_LABELS[row["bucket"]]] = row["n"]
    return counts


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def simulate(
    decisions: Any, *, now: datetime, window: timedelta, min_scores: tuple[int, ...], limit_factor: Decimal, chosen: int
) -> list[SimulationRow]:
    """Replay stored order decisions under each minimum score (and the limit factor)."""
    rows = list(
        decisions.filter(channel__in=sorted(ORDER_CHANNELS), score__isnull=False)
        .annotate(bad=_went_bad(window))
        .order_by("-created_at")
        .values_list(
            "score",
            "amount",
            "outcome",
            "created_at",
            "bad",
            "reasons",
            "snapshot__listing_min_score",
            "snapshot__credit_limit_amount",
            "snapshot__open_exposure_amount",
        )[:SIMULATION_LIMIT]
    )
    prepared = []
    for score, amount, outcome, created_at, bad, reasons, listing_min, limit, exposure in rows:
        codes = {r.get("code") for r in (reasons or []) if isinstance(r, dict)}
        limit_d, exposure_d = _decimal(limit), _decimal(exposure)
        if limit_d is None or exposure_d is None:
            continue
        fits = limit_d * limit_factor - exposure_d >= amount
        observed = outcome == DecisionOutcome.APPROVED and created_at <= now - window
        prepared.append(
            (score, int(listing_min or 0), fits, bool(codes - SIMULATED_RULES), observed, 1.0 if bad else 0.0)
        )
    n = len(prepared)
    result = []
    for minimum in sorted(set(min_scores) | {chosen}):
        approved = observed_count = 0
        expected_bad = 0.0
        for score, listing_min, fits, other_failed, observed, bad in prepared:
            if other_failed or not fits or score < max(listing_min, minimum):
                continue
            approved += 1
            if observed:
                observed_count += 1
                expected_bad += bad
            else:
                expected_bad += bad_rate_for_score(score)
        result.append(
            SimulationRow(
                min_score=minimum,
                approved=approved,
                approval_rate=approved / n if n else 0.0,
                breach_rate=_rate(expected_bad, approved),
                observed_share=_rate(observed_count, approved),
                chosen=minimum == chosen,
            )
        )
    return result


# --------------------------------------------------------------------------- SVG charts

CHART_WIDTH = 560
CHART_HEIGHT = 220
PAD = 36


def svg_bar_chart(counts: dict[str, int], *, title: str) -> SafeString:
    """A vertical bar chart of ``counts`` (label → count), as inline SVG."""
    labels = list(counts)
    top = max(counts.values(), default=0) or 1
    inner_w, inner_h = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD
    slot = inner_w / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        height = inner_h * counts[label] / top
        x = PAD + i * slot + slot * 0.1
        y = PAD + inner_h - height
        bars.append((f"{x:.1f}", f"{y:.1f}", f"{slot * 0.8:.1f}", f"{height:.1f}", label, counts[label]))
    body = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#417690"><title>{}: {}</title></rect>',
        bars,
    )
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
        ((f"{PAD + (i + 0.5) * slot:.1f}", CHART_HEIGHT - PAD + 14, label) for i, label in enumerate(labels)),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        '<title>{title}</title><text x="{pad}" y="18" font-size="12">{title} (max {top})</text>'
        '<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>{body}{ticks}</svg>',
        w=CHART_WIDTH,
        h=CHART_HEIGHT,
        title=title,
        pad=PAD,
        top=top,
        base=CHART_HEIGHT - PAD,
        right=CHART_WIDTH - PAD,
        body=body,
        ticks=ticks,
    )


def svg_tradeoff_chart(rows: list[SimulationRow], *, title: str) -> SafeString:
    """Breach rate (y) against approval rate (x), one labelled point per minimum score, as inline SVG."""
    points = [(r.approval_rate, r.breach_rate, r.min_score, r.chosen) for r in rows if r.breach_rate is not None]
    inner_w, inner_h = CHART_WIDTH - 2 * PAD, CHART_HEIGHT - 2 * PAD
    y_top = max((p[1] for p in points), default=0.0) or 0.01

    def xy(approval: float, breach: float) -> tuple[str, str]:
        return f"{PAD + inner_w * approval:.1f}", f"{PAD + inner_h - inner_h * breach / y_top:.1f}"

    path = " ".join(",".join(xy(a, b)) for a, b, _m, _c in sorted(points))
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="{}" fill="{}"><title>{}: {}</title></circle>'
        '<text x="{}" y="{}" font-size="9">{}</text>',
        (
            (
                *xy(a, b),
                5 if chosen else 3,
                "#ba2121" if chosen else "#417690",
                m,
                f"{a:.1%} / {b:.2%}",
                *xy(a, b),
                m,
            )
            for a, b, m, chosen in points
        ),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        '<title>{title}</title><text x="{pad}" y="18" font-size="12">{title}</text>'
        '<line x1="{pad}" y1="{base}" x2="{right}" y2="{base}" stroke="#999"/>'
        '<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{base}" stroke="#999"/>'
        '<text x="{right}" y="{xlabel}" font-size="10" text-anchor="end">{xname} 0–100%</text>'
        '<text x="4" y="{pad}" font-size="10">{yname} ≤ {ytop}</text>'
        '<polyline points="{path}" fill="none" stroke="#79aec8"/>{dots}</svg>',
        w=CHART_WIDTH,
        h=CHART_HEIGHT,
        title=title,
        pad=PAD,
        base=CHART_HEIGHT - PAD,
        right=CHART_WIDTH - PAD,
        xlabel=CHART_HEIGHT - 8,
        xname="approval rate",
        yname="breach rate",
        ytop=f"{y_top:.1%}",
        path=path,
        dots=dots,
    )


# --------------------------------------------------------------------------- the page


def monitoring_report(
    *,
    days: int = DEFAULT_PERIOD_DAYS,
    window_days: int = DEFAULT_WINDOW_DAYS,
    min_score: int | None = None,
    limit_factor: Decimal = Decimal("1"),
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything the monitoring page shows, for decisions of the last ``days`` days."""
    now = now or timezone.now()
    window = timedelta(days=window_days)
    recent = AdmissionDecision.objects.filter(created_at__gte=now - timedelta(days=days))
    # Band breach rates need matured decisions, so they look back one window further.
    with_outcomes = AdmissionDecision.objects.filter(created_at__gte=now - timedelta(days=days) - window)
    histogram = score_histogram(recent)
    total = sum(histogram.values())
    recent_distribution = {label: (count / total if total else 0.0) for label, count in histogram.items()}
    active = Scorecard.objects.filter(is_active=True).first()
    reference = active.reference_distribution if active else {}
    psi_value = psi(reference, recent_distribution) if reference and total else None
    chosen = min_score if min_score is not None else active_policy().default_floor
    simulation = simulate(
        with_outcomes,
        now=now,
        window=window,
        min_scores=SIMULATED_MIN_SCORES,
        limit_factor=limit_factor,
        chosen=chosen,
    )
    return {
        "days": days,
        "window_days": window_days,
        "decisions": total,
        "histogram": histogram,
        "histogram_chart": svg_bar_chart(histogram, title="Score distribution"),
        "bands": band_table(with_outcomes, now=now, window=window),
        "active_scorecard": active,
        "psi": psi_value,
        "simulation": simulation,
        "simulation_chart": svg_tradeoff_chart(simulation, title="Approval vs breach by minimum score"),
        "min_score": chosen,
        "limit_factor": limit_factor,
    }
