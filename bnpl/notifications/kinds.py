"""The registry of notification kinds: each template key, who receives it, what data it needs, and its rules.

A kind is the unit of everything the recipient can choose: the preferences page lists kinds, and a kind
is ``mandatory`` when the law or the product promise requires that the person be told (a deduction is
coming, money was taken, a charge failed, the account is paused): those cannot be switched off.

Quiet hours (no SMS 22:00–08:00 Beijing time) apply to every SMS except kinds marked
``quiet_hours_exempt``: the mandatory *transactional* notices that answer something the person has just
done (the charge of the e-bike session they ended at 23:00). Reminders — even mandatory ones, such as the
pre-charge notice or an overdue step — are deferred to 08:00: their moment is days wide, and waking a
person up does not make them pay sooner.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

CONSUMER = "consumer"
MERCHANT = "merchant"


@dataclass(frozen=True)
class KindSpec:
    """One template key: ``templates/notifications/<key>.txt`` with the partials subject, body and sms."""

    key: str
    label: Promise
    audience: str
    required: frozenset[str]
    mandatory: bool
    quiet_hours_exempt: bool = False


_ORDER = frozenset({"merchant", "title", "url"})

KINDS: dict[str, KindSpec] = {
    spec.key: spec
    for spec in (
        KindSpec(
            key="order_confirmed",
            label=_("Order confirmed"),
            audience=CONSUMER,
            required=_ORDER | {"max_amount", "due_delay_days"},
            mandatory=False,
        ),
        KindSpec(
            key="order_completed",
            label=_("Bill ready"),
            audience=CONSUMER,
            required=_ORDER | {"amount_due", "due_at"},
            mandatory=False,
        ),
        KindSpec(
            key="charge_upcoming",
            label=_("Charge coming up"),
            audience=CONSUMER,
            required=_ORDER | {"amount_due", "due_at"},
            mandatory=True,
        ),
        KindSpec(
            key="charge_succeeded",
            label=_("Payment made"),
            audience=CONSUMER,
            required=_ORDER | {"amount", "paid_at"},
            mandatory=True,
            quiet_hours_exempt=True,
        ),
        KindSpec(
            key="charge_failed",
            label=_("Charge failed"),
            audience=CONSUMER,
            required=_ORDER | {"amount", "pay_by"},
            mandatory=True,
            quiet_hours_exempt=True,
        ),
        KindSpec(
            key="payment_overdue",
            label=_("Payment overdue"),
            audience=CONSUMER,
            required=_ORDER | {"amount", "days"},
            mandatory=True,
        ),
        KindSpec(
            key="account_paused",
            label=_("Pay later paused"),
            audience=CONSUMER,
            required=frozenset({"reason", "url"}),
            mandatory=True,
        ),
        KindSpec(
            key="account_restored",
            label=_("Pay later restored"),
            audience=CONSUMER,
            required=frozenset({"url"}),
            mandatory=False,
        ),
        KindSpec(
            key="agreement_first_use",
            label=_("Authorisation active"),
            audience=CONSUMER,
            required=frozenset({"merchant", "listing", "url"}),
            mandatory=True,
        ),
        KindSpec(
            key="rewards_level_up",
            label=_("Rewards level reached"),
            audience=CONSUMER,
            required=frozenset({"level", "url"}),
            mandatory=False,
        ),
        KindSpec(
            key="merchant_digest",
            label=_("Daily merchant digest"),
            audience=MERCHANT,
            required=frozenset({"merchant", "day", "failed_charges", "failed_total", "disputes", "url"}),
            mandatory=False,
        ),
    )
}

CONSUMER_KINDS: tuple[KindSpec, ...] = tuple(spec for spec in KINDS.values() if spec.audience == CONSUMER)


class UnknownNotificationKind(LookupError):
    """A template key nobody declared: a programming error, raised loudly."""


def kind_spec(key: str) -> KindSpec:
    """The spec of ``key``; an unknown key raises :class:`UnknownNotificationKind`."""
    try:
        return KINDS[key]
    except KeyError:
        raise UnknownNotificationKind(f"unknown notification template key {key!r}") from None
