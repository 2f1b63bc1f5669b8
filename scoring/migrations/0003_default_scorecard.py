"""Ship the default scorecard, active, so the platform scores from the first start.

A frozen copy of ``scoring.default_card.DEFAULT_SCORECARD_SPEC`` (a migration must not
change when that module does); docs/scoring.md explains each bin.
"""

from django.db import migrations

VERSION = "default-1"
SPEC = {
    "base_points": 580,
    "variables": [
        {"name": "kept_promises", "splits": [1, 3, 10, 30], "points": [0, 10, 25, 45, 60], "missing_points": 0},
        {"name": "on_time_rate", "splits": [0.8, 0.95, 1.0], "points": [-60, -25, 0, 15], "missing_points": 0},
        {"name": "breaches", "splits": [1, 2], "points": [10, -15, -40], "missing_points": 0},
        {"name": "worst_dpd", "splits": [1, 31], "points": [0, -10, -35], "missing_points": 0},
        {"name": "days_since_last_breach", "splits": [90, 365], "points": [-40, -15, 0], "missing_points": 10},
        {"name": "utilisation", "splits": [0.3, 0.7, 0.9], "points": [15, 0, -15, -30], "missing_points": 0},
        {"name": "orders_in_arrears", "splits": [1], "points": [10, -60], "missing_points": 0},
        {"name": "recent_charge_failures", "splits": [1, 3], "points": [5, -15, -35], "missing_points": 0},
        {"name": "days_since_first_order", "splits": [30, 180], "points": [0, 10, 20], "missing_points": -5},
        {"name": "days_since_last_order", "splits": [30, 180], "points": [5, 0, -5], "missing_points": 0},
        {"name": "orders_total", "splits": [1, 5, 20], "points": [0, 5, 10, 15], "missing_points": 0},
        {"name": "scenarios_used", "splits": [2, 3], "points": [0, 5, 10], "missing_points": 0},
        {"name": "cancel_rate", "splits": [0.2, 0.5], "points": [5, -5, -15], "missing_points": 0},
        {"name": "disputes", "splits": [1, 3], "points": [0, -5, -20], "missing_points": 0},
        {"name": "real_name_verified", "splits": [1], "points": [-30, 15], "missing_points": -30},
        {"name": "phone_verified", "splits": [1], "points": [-20, 5], "missing_points": -20},
        {"name": "account_age_days", "splits": [30, 365], "points": [-10, 0, 10], "missing_points": -10},
        {"name": "kept_merchants", "splits": [1, 3], "points": [-10, 5, 20], "missing_points": -10},
    ],
}


def create_default(apps, schema_editor):
    Scorecard = apps.get_model("scoring", "Scorecard")
    ScorecardEvent = apps.get_model("scoring", "ScorecardEvent")
    if Scorecard.objects.filter(version=VERSION).exists():
        return
    # Only active when nothing else is (a database that already has an active card keeps it).
    active = not Scorecard.objects.filter(is_active=True).exists()
    card = Scorecard.objects.create(
        version=VERSION,
        source="default",
        spec=SPEC,
        pdo=50,
        anchor_score=600,
        anchor_odds=19,
        is_active=active,
        notes="Shipped default: judgement-based bins, see docs/scoring.md.",
    )
    ScorecardEvent.objects.create(scorecard=card, kind="created", reason="shipped default")
    if active:
        ScorecardEvent.objects.create(scorecard=card, kind="activated", reason="shipped default")


def remove_default(apps, schema_editor):
    Scorecard = apps.get_model("scoring", "Scorecard")
    ScorecardEvent = apps.get_model("scoring", "ScorecardEvent")
    ScorecardEvent.objects.filter(scorecard__version=VERSION).delete()
    Scorecard.objects.filter(version=VERSION, decisions__isNone=True).delete()


class Migration(migrations.Migration):
    dependencies = [("scoring", "0002_features_scorecards_blocklist")]

    operations = [migrations.RunPython(create_default, remove_default)]
