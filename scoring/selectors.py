"""Reads of the scoring app: the active scorecard, a decision's explanation, a consumer's score breakdown."""

from __future__ import annotations

from typing import Any

from consumers.models import Consumer

from .models import AdmissionDecision, ConsumerFeatures, Scorecard
from .reasons import HEADLINE, HEADLINE_ZH


def scorecard_get_active() -> Scorecard | None:
    """The scorecard new decisions use, or ``None`` (then every admission declines)."""
    return Scorecard.objects.filter(is_active=True).first()


def consumer_features_get(*, consumer: Consumer) -> ConsumerFeatures | None:
    """The consumer's feature row (``None`` before their first order)."""
    return ConsumerFeatures.objects.filter(pk=consumer.pk).first()


def admission_decision_get_for_consumer(*, consumer: Consumer, decision_id: int) -> AdmissionDecision:
    """One of the consumer's own decisions; another consumer's raises ``AdmissionDecision.DoesNotExist``."""
    return AdmissionDecision.objects.get(pk=decision_id, consumer=consumer)


def admission_decision_explain(*, decision: AdmissionDecision) -> dict[str, Any]:
    """What the consumer is told about a decision (PIPL art. 24), in English and zh-hans.

    A decline reads "暂时无法开通" (Cannot open for now) with each failed rule and what
    would change it; when the score was among them, the scorecard's top reasons (the
    variables that cost the most points) say why the score is what it is.
    """
    return {
        "approved": decision.approved,
        "headline": "" if decision.approved else str(HEADLINE),
        "headline_zh": "" if decision.approved else HEADLINE_ZH,
        "reasons": list(decision.reasons),
        "score": decision.score,
        "score_reasons": list(decision.score_reasons),
        "sub_scores": dict(decision.sub_scores),
    }
