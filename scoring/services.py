"""Admission: the 事前准入评估 run at every entry (sign-up, order, confirmation).

This is the foundation's minimal policy; the scoring issue replaces the rules
behind the same ``admission_assess`` signature. Every decision is stored with the
inputs it read and its reasons, approved or not (PIPL art. 24: an automated
decision must be explainable to the person).
"""

from __future__ import annotations

import time
from decimal import Decimal

from consumers.models import Consumer, CreditProfile
from merchants.choices import ListingStatus, MerchantStatus
from merchants.models import Listing

from .choices import DecisionOutcome, ReasonCode
from .models import AdmissionDecision

POLICY_VERSION = "foundation-1"


def _reason(code: ReasonCode) -> dict[str, str]:
    return {"code": code.value, "message": str(code.label)}


def admission_assess(*, consumer: Consumer, listing: Listing, amount: Decimal, channel: str) -> AdmissionDecision:
    """Assess whether ``consumer`` may open an order of up to ``amount`` on ``listing``.

    Reads the profile without a lock: the decision says whether the consumer is
    eligible; the credit hold that follows (``credit_hold_acquire``) is what makes
    the limit safe under concurrency, and a hold that fails turns into a decline.
    """
    started = time.perf_counter()
    profile = CreditProfile.objects.get(consumer=consumer)
    merchant = listing.merchant
    reasons: list[dict[str, str]] = []
    if merchant.status != MerchantStatus.APPROVED:
        reasons.append(_reason(ReasonCode.MERCHANT_UNAVAILABLE))
    if listing.status != ListingStatus.ACTIVE:
        reasons.append(_reason(ReasonCode.LISTING_UNAVAILABLE))
    if profile.is_paused:
        reasons.append(_reason(ReasonCode.ACCOUNT_PAUSED))
    if profile.score < listing.min_score:
        reasons.append(_reason(ReasonCode.SCORE_BELOW_MINIMUM))
    available = profile.credit_limit_amount - profile.open_exposure_amount
    if available < amount:
        reasons.append(_reason(ReasonCode.INSUFFICIENT_LIMIT))
    snapshot = {
        "score": profile.score,
        "credit_limit_amount": str(profile.credit_limit_amount),
        "open_exposure_amount": str(profile.open_exposure_amount),
        "available_amount": str(available),
        "is_paused": profile.is_paused,
        "listing_min_score": listing.min_score,
        "merchant_status": merchant.status,
        "listing_status": listing.status,
    }
    return AdmissionDecision.objects.create(
        consumer=consumer,
        listing=listing,
        amount=amount,
        channel=channel,
        outcome=DecisionOutcome.DECLINED if reasons else DecisionOutcome.APPROVED,
        reasons=reasons,
        snapshot=snapshot,
        policy_version=POLICY_VERSION,
        latency_ms=Decimal(f"{(time.perf_counter() - started) * 1000:.3f}"),
    )
