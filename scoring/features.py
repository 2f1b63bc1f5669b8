"""The score's input variables: what each one measures, its dimension, and how it is derived.

The platform keeps one :class:`scoring.models.ConsumerFeatures` row per consumer, updated
incrementally as orders open and promise records are written. At decision time
:func:`derive_variables` turns that row, the consumer row and the credit profile into
the flat variables the scorecard bins (numbers, or ``None`` for "no data yet"), as of
``now``: time-based variables (days since the last breach, tenure) are computed from
stored timestamps, so they are right on the day of the decision without a nightly
rewrite. The same dict is stored in the decision's snapshot, and training reads it from
there, so a model never sees anything that happened after the decision.

Each variable has one reason code and a consumer-facing sentence in English (a gettext
msgid) and zh-hans, used when it is among the variables that cost the most points.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .choices import Dimension

if TYPE_CHECKING:
    from consumers.models import Consumer, CreditProfile

    from .models import ConsumerFeatures

# Charge failures older than this no longer count against the funding source's health.
CHARGE_FAILURE_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class VariableSpec:
    """One scorecard input: its dimension and the reason shown when it costs the consumer points."""

    name: str
    dimension: str
    reason_code: str
    message: Promise  # English msgid, translated at render time
    message_zh: str
    hint: Promise
    hint_zh: str
    # The reason to give instead when the value is missing ("no data yet" is not "late payments").
    missing_reason_code: str = ""


@dataclass(frozen=True)
class ReasonText:
    """The consumer-facing sentences of a score reason code."""

    message: Promise
    message_zh: str
    hint: Promise
    hint_zh: str


D = Dimension

VARIABLES: tuple[VariableSpec, ...] = (
    # --- credit history
    VariableSpec(
        "kept_promises",
        D.HISTORY,
        "few_kept_promises",
        _("You have kept only a few pay-later promises so far."),
        "已守约的先享订单还不多。",
        _("Each order you pay on time adds to your record."),
        "每按时付清一笔订单，都会为你的信用记录加分。",
    ),
    VariableSpec(
        "on_time_rate",
        D.HISTORY,
        "late_payments",
        _("Some of your past orders were not paid on time."),
        "部分历史订单没有按时付款。",
        _("Paying your next orders on time raises your on-time rate."),
        "接下来的订单按时付款，守约率就会回升。",
        missing_reason_code="no_repayment_history",
    ),
    VariableSpec(
        "breaches",
        D.HISTORY,
        "past_breaches",
        _("You have broken pay-later promises before."),
        "曾有先享订单违约。",
        _("A clean record from now on weighs more and more over time."),
        "从现在起保持良好记录，影响会随时间逐渐减弱。",
    ),
    VariableSpec(
        "worst_dpd",
        D.HISTORY,
        "long_overdue",
        _("An order of yours was overdue for a long time."),
        "曾有订单长时间逾期未付。",
        _("Settle overdue orders as soon as possible."),
        "尽快结清逾期订单。",
    ),
    VariableSpec(
        "days_since_last_breach",
        D.HISTORY,
        "recent_breach",
        _("You broke a pay-later promise recently."),
        "最近有先享订单违约。",
        _("This counts less as time passes without another miss."),
        "随着时间推移且不再违约，这一项的影响会减小。",
    ),
    # --- ability to perform
    VariableSpec(
        "utilisation",
        D.ABILITY,
        "high_utilisation",
        _("Your open orders use much of your limit."),
        "未完结订单占用了较多额度。",
        _("Finishing or paying open orders frees your limit."),
        "完成或付清未完结订单，可释放额度。",
        missing_reason_code="no_limit",
    ),
    VariableSpec(
        "orders_in_arrears",
        D.ABILITY,
        "orders_in_arrears",
        _("You have an overdue order that is not yet paid."),
        "有逾期订单尚未付清。",
        _("Pay the overdue order to lift this at once."),
        "付清逾期订单后，这一项会立即恢复。",
    ),
    VariableSpec(
        "recent_charge_failures",
        D.ABILITY,
        "charge_failures",
        _("Recent automatic charges to your payment method failed."),
        "近期自动扣款曾失败。",
        _("Keep enough balance in your payment method, or change it."),
        "请确保扣款账户余额充足，或更换扣款方式。",
    ),
    # --- behaviour
    VariableSpec(
        "days_since_first_order",
        D.BEHAVIOUR,
        "short_history",
        _("You started using pay-later only recently."),
        "使用先享服务的时间还不长。",
        _("A longer record of use helps your score."),
        "持续使用，信用记录越长越有帮助。",
        missing_reason_code="no_orders_yet",
    ),
    VariableSpec(
        "days_since_last_order",
        D.BEHAVIOUR,
        "inactive",
        _("You have not used pay-later for a while."),
        "近期没有使用先享服务。",
        _("Regular use keeps your record current."),
        "经常使用能让信用记录保持活跃。",
        missing_reason_code="no_orders_yet",
    ),
    VariableSpec(
        "orders_total",
        D.BEHAVIOUR,
        "few_orders",
        _("You have placed few pay-later orders."),
        "先享订单数量较少。",
        _("More orders paid on time build your record."),
        "更多按时付款的订单会积累信用记录。",
    ),
    VariableSpec(
        "scenarios_used",
        D.BEHAVIOUR,
        "narrow_use",
        _("You have used pay-later in few kinds of services."),
        "使用先享的场景较少。",
        _("Using pay-later across services broadens your record."),
        "在更多场景使用先享，可丰富信用记录。",
    ),
    VariableSpec(
        "cancel_rate",
        D.BEHAVIOUR,
        "many_cancellations",
        _("Many of your pay-later orders were cancelled."),
        "较多先享订单被取消。",
        _("Confirm orders only when you mean to use the service."),
        "确定要使用服务时再确认订单。",
        missing_reason_code="no_repayment_history",
    ),
    VariableSpec(
        "disputes",
        D.BEHAVIOUR,
        "disputes",
        _("You have raised several disputes on orders."),
        "订单争议较多。",
        _("Settle questions with the merchant first where you can."),
        "遇到问题可先与商家沟通解决。",
    ),
    # --- identity
    VariableSpec(
        "real_name_verified",
        D.IDENTITY,
        "identity_not_verified",
        _("Your real name is not verified."),
        "尚未完成实名认证。",
        _("Verify your real name in your account."),
        "在账户中完成实名认证。",
    ),
    VariableSpec(
        "phone_verified",
        D.IDENTITY,
        "phone_not_verified",
        _("Your phone number is not verified."),
        "手机号尚未验证。",
        _("Verify your phone number in your account."),
        "在账户中验证手机号。",
    ),
    VariableSpec(
        "account_age_days",
        D.IDENTITY,
        "new_account",
        _("Your account is new."),
        "账户注册时间较短。",
        _("This improves by itself as your account gets older."),
        "随着账户使用时间增长，这一项会自然提升。",
    ),
    # --- connections
    VariableSpec(
        "kept_merchants",
        D.CONNECTIONS,
        "few_merchants",
        _("You have kept promises with few merchants."),
        "守约过的商家较少。",
        _("Kept promises with more merchants help a little."),
        "与更多商家保持守约记录会有所帮助。",
    ),
)

VARIABLES_BY_NAME: dict[str, VariableSpec] = {spec.name: spec for spec in VARIABLES}

# Reasons given for a variable with no data yet (see ``missing_reason_code``).
_MISSING_REASONS: dict[str, ReasonText] = {
    "no_repayment_history": ReasonText(
        _("You have no pay-later repayment record with us yet."),
        "你在平台上还没有先享还款记录。",
        _("Your first orders paid on time start your record."),
        "首几笔订单按时付款，就能开始积累记录。",
    ),
    "no_orders_yet": ReasonText(
        _("You have not used pay-later yet."),
        "你还没有使用过先享服务。",
        _("Start with a small order and pay it on time."),
        "可以从小额订单开始，并按时付款。",
    ),
    "no_limit": ReasonText(
        _("You have no pay-later limit at the moment."),
        "你目前没有先享额度。",
        _("Your limit is reviewed as your record improves."),
        "随着信用记录改善，额度会重新评估。",
    ),
}

# Every score reason code and its sentences.
SCORE_REASON_TEXTS: dict[str, ReasonText] = {
    **{spec.reason_code: ReasonText(spec.message, spec.message_zh, spec.hint, spec.hint_zh) for spec in VARIABLES},
    **_MISSING_REASONS,
}
VARIABLE_NAMES: tuple[str, ...] = tuple(spec.name for spec in VARIABLES)


def _days(now: datetime, then: datetime | None) -> int | None:
    if then is None:
        return None
    return max((now - then).days, 0)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator > 0 else None


def derive_variables(
    *, consumer: Consumer, profile: CreditProfile, features: ConsumerFeatures | None, now: datetime
) -> dict[str, Any]:
    """The scorecard's input variables for one consumer as of ``now``.

    ``features`` may be ``None`` (a consumer who has never had an order): every
    history variable is then "no data" or zero. Values are plain numbers (JSON-safe),
    or ``None`` where a rate has no denominator or an event never happened.
    """
    fulfilled = features.fulfilled_count if features else 0
    cancelled = features.cancelled_count if features else 0
    breached = features.breached_count if features else 0
    recovered = features.recovered_count if features else 0
    limit = profile.credit_limit_amount
    exposure = profile.open_exposure_amount
    recent_failures = 0
    if features and features.last_charge_failure_at and now - features.last_charge_failure_at <= CHARGE_FAILURE_WINDOW:
        recent_failures = features.charge_failures
    return {
        "kept_promises": fulfilled,
        "on_time_rate": _ratio(fulfilled, fulfilled + breached),
        "breaches": breached,
        "worst_dpd": features.worst_dpd if features else 0,
        "days_since_last_breach": _days(now, features.last_breach_at) if features else None,
        "utilisation": float(round(exposure / limit, 4)) if limit > Decimal(0) else None,
        "orders_in_arrears": max(breached - recovered, 0),
        "recent_charge_failures": recent_failures,
        "days_since_first_order": _days(now, features.first_order_at) if features else None,
        "days_since_last_order": _days(now, features.last_order_at) if features else None,
        "orders_total": features.orders_total if features else 0,
        "scenarios_used": len(features.scenario_counts) if features else 0,
        "cancel_rate": _ratio(cancelled, fulfilled + cancelled + breached),
        "disputes": features.disputes_count if features else 0,
        "real_name_verified": 1 if consumer.verified_at is not None else 0,
        "phone_verified": 1 if consumer.phone_verified else 0,
        "account_age_days": _days(now, consumer.created_at) or 0,
        "kept_merchants": len(features.kept_merchant_ids) if features else 0,
    }
