"""The scorecard the platform ships with, so it can score from the first start.

It was not fitted (a new platform has no repayment outcomes to fit on): each bin's
points are a judgement of how much that bin moves the good:bad odds, expressed on the
platform's scale (50 points double the odds, 600 points = 19:1). docs/scoring.md gives
the reasoning bin by bin. Once outcomes accumulate, ``manage.py train_scorecard`` fits a
replacement and staff activate it in the admin.

The data migration ``scoring/migrations/0003_default_scorecard.py`` holds a frozen copy
of this spec (a migration must not change when this module does); a test checks the two
agree.

Shape: ``base_points`` plus, per variable, ascending ``splits`` and one ``points`` value
per bin (bin *i* is ``[splits[i-1], splits[i])``), and ``missing_points`` for "no data".
A brand-new consumer with a verified phone and no real-name check scores 580 (fair,
about 13:1); after real-name verification 625 (good, about 27:1); a long, clean,
varied record reaches about 810.
"""

from __future__ import annotations

DEFAULT_SCORECARD_VERSION = "default-1"

DEFAULT_SCORECARD_SPEC: dict = {
    "base_points": 580,
    "variables": [
        # --- credit history (the strongest signal: how this person kept their promises with us)
        {"name": "kept_promises", "splits": [1, 3, 10, 30], "points": [0, 10, 25, 45, 60], "missing_points": 0},
        {"name": "on_time_rate", "splits": [0.8, 0.95, 1.0], "points": [-60, -25, 0, 15], "missing_points": 0},
        {"name": "breaches", "splits": [1, 2], "points": [10, -15, -40], "missing_points": 0},
        {"name": "worst_dpd", "splits": [1, 31], "points": [0, -10, -35], "missing_points": 0},
        {"name": "days_since_last_breach", "splits": [90, 365], "points": [-40, -15, 0], "missing_points": 10},
        # --- ability to perform (can they pay what is open now?)
        {"name": "utilisation", "splits": [0.3, 0.7, 0.9], "points": [15, 0, -15, -30], "missing_points": 0},
        {"name": "orders_in_arrears", "splits": [1], "points": [10, -60], "missing_points": 0},
        {"name": "recent_charge_failures", "splits": [1, 3], "points": [5, -15, -35], "missing_points": 0},
        # --- behaviour (tenure, frequency, recency, breadth, cancellations, disputes)
        {"name": "days_since_first_order", "splits": [30, 180], "points": [0, 10, 20], "missing_points": -5},
        {"name": "days_since_last_order", "splits": [30, 180], "points": [5, 0, -5], "missing_points": 0},
        {"name": "orders_total", "splits": [1, 5, 20], "points": [0, 5, 10, 15], "missing_points": 0},
        {"name": "scenarios_used", "splits": [2, 3], "points": [0, 5, 10], "missing_points": 0},
        {"name": "cancel_rate", "splits": [0.2, 0.5], "points": [5, -5, -15], "missing_points": 0},
        {"name": "disputes", "splits": [1, 3], "points": [0, -5, -20], "missing_points": 0},
        # --- identity (who they are is known and reachable)
        {"name": "real_name_verified", "splits": [1], "points": [-30, 15], "missing_points": -30},
        {"name": "phone_verified", "splits": [1], "points": [-20, 5], "missing_points": -20},
        {"name": "account_age_days", "splits": [30, 365], "points": [-10, 0, 10], "missing_points": -10},
        # --- connections (kept simple: merchants they have kept promises with)
        {"name": "kept_merchants", "splits": [1, 3], "points": [-10, 5, 20], "missing_points": -10},
    ],
}
