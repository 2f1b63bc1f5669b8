"""Scenario policies: when a completed credit order falls due for its one charge.

芝麻先享 charges "after the service": for a metered session (an e-bike charge, a
parcel sent, a swim) the service is over when the merchant completes the order, so
the charge is due at once. For goods (live-stream shopping) the consumer must first
receive them: the charge waits until receipt is confirmed or auto-confirmed, which
the platforms do after a fixed number of days. Charging before the goods arrive is
one of the top complaints about 先用后付, so this delay is a consumer protection, not
a merchant convenience.

The policy is keyed by scenario and copied onto the order (``CreditOrder.scenario``)
at creation, so changing a listing never moves the due date of an order already
placed. Change a delay here and only orders completed afterwards are affected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from merchants.choices import Scenario

if TYPE_CHECKING:
    from .models import CreditOrder


@dataclass(frozen=True)
class ScenarioPolicy:
    """How one scenario is charged.

    ``due_delay`` is the time between completion (the final bill is known) and the
    moment the charge run may take the money. ``due_date_extension_days`` is how far the
    consumer may push the due date back, once per order (0: no extension is offered;
    :mod:`bnpl.extensions`).
    """

    scenario: str
    due_delay: timedelta
    due_date_extension_days: int = 0
    # Reminders (bnpl/notifications/reminders.py, docs/notifications.md). ``charge_notice``: how long before the
    # charge the consumer must be told (mandatory; zero = no separate notice, because the charge follows the
    # session at once and the completion notice states the amount). ``extra_reminder_leads``: closer, optional
    # reminders, withheld from the control group when ``reminder_control_allowed`` (never the notice itself).
    charge_notice: timedelta = timedelta(0)
    extra_reminder_leads: tuple[timedelta, ...] = ()
    reminder_control_allowed: bool = False

    def reminder_leads(self, *, control: bool = False) -> tuple[timedelta, ...]:
        """The pre-charge reminder leads, longest first; the control group keeps only the mandatory notice."""
        leads = {self.charge_notice} if self.charge_notice else set()
        if not (control and self.reminder_control_allowed):
            leads |= set(self.extra_reminder_leads)
        return tuple(sorted(leads, reverse=True))


# The notice the law asks before an automatic deduction (the auto-renewal rule: 5 days). Goods charged days after
# receipt give at least this much (or the whole delay when it is shorter); checked when this module loads.
LEGAL_CHARGE_NOTICE = timedelta(days=5)


# Metered services are charged right after the session; goods seven days after completion,
# the usual auto-confirm-receipt window of Chinese e-commerce platforms.
# Extensions: none for e-bike charging (a few yuan, charged as the session ends); a few days for a
# parcel; a week for a fitness pack and for goods, where a bill can be large enough to need it.
SCENARIO_POLICIES: dict[str, ScenarioPolicy] = {
    Scenario.EBIKE_CHARGING: ScenarioPolicy(Scenario.EBIKE_CHARGING, timedelta(0), due_date_extension_days=0),
    Scenario.EXPRESS_DELIVERY: ScenarioPolicy(Scenario.EXPRESS_DELIVERY, timedelta(0), due_date_extension_days=3),
    Scenario.SWIMMING_FITNESS: ScenarioPolicy(Scenario.SWIMMING_FITNESS, timedelta(0), due_date_extension_days=7),
    Scenario.LIVE_SHOPPING: ScenarioPolicy(
        Scenario.LIVE_SHOPPING,
        timedelta(days=7),
        due_date_extension_days=7,
        charge_notice=LEGAL_CHARGE_NOTICE,
        extra_reminder_leads=(timedelta(days=1),),
        reminder_control_allowed=True,
    ),
}


def _check_reminder_policies() -> None:
    for policy in SCENARIO_POLICIES.values():
        if policy.due_delay > timedelta(0) and policy.charge_notice < min(LEGAL_CHARGE_NOTICE, policy.due_delay):
            raise ValueError(f"{policy.scenario}: the pre-charge notice is shorter than the law asks")
        if any(lead <= timedelta(0) for lead in policy.extra_reminder_leads):
            raise ValueError(f"{policy.scenario}: reminder leads must be positive")


_check_reminder_policies()


def policy_for(scenario: str) -> ScenarioPolicy:
    """The policy of ``scenario``; an unknown scenario is a programming error, not a default."""
    try:
        return SCENARIO_POLICIES[scenario]
    except KeyError:
        raise LookupError(f"no charge policy for scenario {scenario!r}") from None


def due_at_for(order: CreditOrder, completed_at: datetime) -> datetime:
    """When the charge of ``order``, completed at ``completed_at``, falls due."""
    return completed_at + policy_for(order.scenario).due_delay
