"""The admission policy: versioned rules on top of the score.

A policy is code, reviewed like code: change a number, add a new version to
:data:`POLICIES` and point :data:`ACTIVE_POLICY_VERSION` at it. Every decision records
the version it ran under (and the limit ladder's version), so a decision can always be
explained by the rules that were in force. The monitoring page's simulator replays
stored decisions under a copy of the policy with other numbers
(:meth:`AdmissionPolicy.with_overrides`).

The rules, in the order their reasons are listed:

1. the merchant is approved (not suspended);
2. the consumer's profile is not paused (an overdue order);
3. the consumer, their phone and their resident ID are not on the blocklist;
4. an active scorecard exists (else ``scoring_unavailable``: never approve blindly);
5. score ≥ max(the listing's minimum, the platform floor for the scenario);
6. available limit ≥ the amount (the order's cap);
7. the consumer's own spend cap leaves room for the amount;
8. (orders only) open orders < the maximum, overall and with this merchant;
9. (orders only) orders opened in the last hour / 24 hours < the velocity limits.

A paused listing is not a rule but bad input: ``admission_assess`` refuses it with an
error and stores no decision (there is nothing to assess the consumer for).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from merchants.choices import Scenario


@dataclass(frozen=True)
class AdmissionPolicy:
    """One version of the admission rules' numbers."""

    version: str
    # The platform's minimum score by scenario, whatever a merchant asks for: goods shipped
    # before payment (live shopping) carry more risk than a one-yuan charging session.
    scenario_floor: dict[str, int] = field(default_factory=dict)
    default_floor: int = 500
    max_open_orders: int = 10
    max_open_orders_per_merchant: int = 5
    max_orders_per_hour: int = 10
    max_orders_per_day: int = 30

    def floor_for(self, scenario: str) -> int:
        return self.scenario_floor.get(scenario, self.default_floor)

    def with_overrides(self, **changes: Any) -> AdmissionPolicy:
        """A copy with other numbers (for what-if replays); the version says it is simulated."""
        return dataclasses.replace(self, version=f"{self.version}+sim", **changes)


POLICIES: dict[str, AdmissionPolicy] = {
    "admission-2": AdmissionPolicy(
        version="admission-2",
        scenario_floor={
            Scenario.EBIKE_CHARGING: 500,
            Scenario.EXPRESS_DELIVERY: 500,
            Scenario.SWIMMING_FITNESS: 520,
            Scenario.LIVE_SHOPPING: 550,
        },
    ),
}
ACTIVE_POLICY_VERSION = "admission-2"


def active_policy() -> AdmissionPolicy:
    """The policy new decisions run under."""
    return POLICIES[ACTIVE_POLICY_VERSION]
