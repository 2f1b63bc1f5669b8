"""What a consumer is told: each reason code's sentence and what would change the outcome.

A declined consumer sees "暂时无法开通" (Cannot open for now) with the reasons and, for
each, a hint (PIPL art. 24: an automated decision must be explainable to the person).
The English sentences are gettext msgids (translated when rendered); the zh-hans
sentences are kept next to them so a decision stores both, whatever language the
request ran in.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from .choices import ReasonCode
from .features import SCORE_REASON_TEXTS, ReasonText
from .scorecard import ScoreReason

HEADLINE = _("Cannot open for now")
HEADLINE_ZH = "暂时无法开通"

R = ReasonCode

POLICY_REASON_TEXTS: dict[str, ReasonText] = {
    R.SCORE_BELOW_MINIMUM: ReasonText(
        R.SCORE_BELOW_MINIMUM.label,
        "你的信用分暂未达到该服务的要求。",
        _("Paying orders on time and verifying your identity raise your score."),
        "按时付款、完成实名认证都能提升信用分。",
    ),
    R.INSUFFICIENT_LIMIT: ReasonText(
        R.INSUFFICIENT_LIMIT.label,
        "你的可用先享额度不足以支付本单。",
        _("Finishing or paying open orders frees your limit; a smaller order may fit."),
        "完成或付清未完结订单可释放额度，也可以选择金额更小的服务。",
    ),
    R.SPEND_CAP_REACHED: ReasonText(
        R.SPEND_CAP_REACHED.label,
        "本单会超过你自己设置的消费上限。",
        _("You can raise or remove your own spending cap in your account."),
        "你可以在账户中调高或取消自己设置的消费上限。",
    ),
    R.ACCOUNT_PAUSED: ReasonText(
        R.ACCOUNT_PAUSED.label,
        "有逾期订单未付清，先享服务已暂停。",
        _("Pay the overdue order and pay-later opens again."),
        "付清逾期订单后即可恢复使用。",
    ),
    R.LISTING_UNAVAILABLE: ReasonText(
        R.LISTING_UNAVAILABLE.label,
        "该服务暂不可用。",
        _("Try again later or choose another service."),
        "请稍后再试，或选择其他服务。",
    ),
    R.MERCHANT_UNAVAILABLE: ReasonText(
        R.MERCHANT_UNAVAILABLE.label,
        "该商家暂不可用。",
        _("Try again later or choose another merchant."),
        "请稍后再试，或选择其他商家。",
    ),
    R.BLOCKLISTED: ReasonText(
        R.BLOCKLISTED.label,
        "该账户暂不能使用先享服务。",
        _("Contact customer service if you think this is a mistake."),
        "如有疑问，请联系客服。",
    ),
    R.TOO_MANY_OPEN_ORDERS: ReasonText(
        R.TOO_MANY_OPEN_ORDERS.label,
        "你同时进行中的先享订单过多。",
        _("Finish or pay an open order first."),
        "请先完成或付清一笔进行中的订单。",
    ),
    R.TOO_MANY_OPEN_ORDERS_AT_MERCHANT: ReasonText(
        R.TOO_MANY_OPEN_ORDERS_AT_MERCHANT.label,
        "你在该商家进行中的先享订单过多。",
        _("Finish or pay an open order with this merchant first."),
        "请先完成或付清在该商家的一笔订单。",
    ),
    R.TOO_MANY_ORDERS_THIS_HOUR: ReasonText(
        R.TOO_MANY_ORDERS_THIS_HOUR.label,
        "你在过去一小时内下单次数较多。",
        _("Try again in an hour."),
        "请一小时后再试。",
    ),
    R.TOO_MANY_ORDERS_TODAY: ReasonText(
        R.TOO_MANY_ORDERS_TODAY.label,
        "你今天的先享下单次数较多。",
        _("Try again tomorrow."),
        "请明天再试。",
    ),
    R.SCORING_UNAVAILABLE: ReasonText(
        R.SCORING_UNAVAILABLE.label,
        "暂时无法评估你的信用。",
        _("This is on our side; please try again later."),
        "这是平台的原因，请稍后再试。",
    ),
}


def _render(code: str, text: ReasonText) -> dict[str, str]:
    return {
        "code": code,
        "message": str(text.message),
        "message_zh": text.message_zh,
        "hint": str(text.hint),
        "hint_zh": text.hint_zh,
    }


def policy_reason(code: ReasonCode) -> dict[str, str]:
    """A declined rule as stored on the decision: code, sentence and hint, in English and zh-hans."""
    return _render(code.value, POLICY_REASON_TEXTS[code])


def score_reason(reason: ScoreReason) -> dict[str, object]:
    """A scorecard reason as stored on the decision, with the points it cost."""
    rendered: dict[str, object] = dict(_render(reason.code, SCORE_REASON_TEXTS[reason.code]))
    rendered["variable"] = reason.variable
    rendered["points_lost"] = reason.points_lost
    return rendered
