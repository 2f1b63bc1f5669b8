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
    moment the charge run may take the money.
    """

    scenario: str
    due_delay: timedelta


# Metered services are charged right after the session; goods seven days after completion,
# the usual auto-confirm-receipt window of Chinese e-commerce platforms.
SCENARIO_POLICIES: dict[str, ScenarioPolicy] = {
    Scenario.EBIKE_CHARGING: ScenarioPolicy(Scenario.EBIKE_CHARGING, timedelta(0)),
    Scenario.EXPRESS_DELIVERY: ScenarioPolicy(Scenario.EXPRESS_DELIVERY, timedelta(0)),
    Scenario.SWIMMING_FITNESS: ScenarioPolicy(Scenario.SWIMMING_FITNESS, timedelta(0)),
    Scenario.LIVE_SHOPPING: ScenarioPolicy(Scenario.LIVE_SHOPPING, timedelta(days=7)),
}


def policy_for(scenario: str) -> ScenarioPolicy:
    """The policy of ``scenario``; an unknown scenario is a programming error, not a default."""
    try:
        return SCENARIO_POLICIES[scenario]
    except KeyError:
        raise LookupError(f"no charge policy for scenario {scenario!r}") from None


def due_at_for(order: CreditOrder, completed_at: datetime) -> datetime:
    """When the charge of ``order``, completed at ``completed_at``, falls due."""
    return completed_at + policy_for(order.scenario).due_delay
