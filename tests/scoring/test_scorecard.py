"""Scorecard scaling, bin lookup, reason ranking and the shipped default card (pure, no database)."""

from __future__ import annotations

import importlib
import math

import pytest

from scoring.default_card import DEFAULT_SCORECARD_SPEC, DEFAULT_SCORECARD_VERSION
from scoring.features import SCORE_REASON_TEXTS, VARIABLE_NAMES, VARIABLES
from scoring.scorecard import (
    ScorecardSpecError,
    bad_rate_for_score,
    clip_score,
    compile_spec,
    odds_for_score,
    scaling_factor,
    scaling_offset,
    score_for_odds,
)

# --- scaling ------------------------------------------------------------------------------------


def test_factor_and_offset_follow_the_documented_anchor():
    assert scaling_factor(50) == pytest.approx(72.13475204)
    assert scaling_offset(600, 19, 50) == pytest.approx(600 - 72.13475204 * math.log(19))
    assert scaling_offset() == pytest.approx(387.6036, abs=1e-4)


@pytest.mark.parametrize(
    ("odds", "score"),
    [(19, 600.0), (38, 650.0), (76, 700.0), (9.5, 550.0), (4.75, 500.0), (1, 387.6036)],
)
def test_known_odds_give_known_scores(odds, score):
    assert score_for_odds(odds) == pytest.approx(score, abs=1e-4)


def test_odds_for_score_inverts_the_scaling_and_600_is_a_five_percent_bad_rate():
    assert odds_for_score(600) == pytest.approx(19)
    assert odds_for_score(650) == pytest.approx(38)
    assert bad_rate_for_score(600) == pytest.approx(0.05)
    assert bad_rate_for_score(650) == pytest.approx(1 / 39)


def test_other_pdo_and_anchor_scale_accordingly():
    assert score_for_odds(40, pdo=20, anchor_score=500, anchor_odds=10) == pytest.approx(540)


def test_scores_are_rounded_half_up_and_clipped_to_350_950():
    assert (clip_score(600.5), clip_score(600.49), clip_score(120), clip_score(1200)) == (601, 600, 350, 950)


def test_non_positive_odds_are_refused():
    with pytest.raises(ValueError):
        score_for_odds(0)


# --- lookup -------------------------------------------------------------------------------------

CARD = compile_spec(
    {
        "base_points": 500,
        "variables": [
            {"name": "kept_promises", "splits": [1, 5], "points": [0, 20, 50], "missing_points": -5},
            {"name": "utilisation", "splits": [0.5], "points": [10, -40], "missing_points": 0},
            {"name": "real_name_verified", "splits": [1], "points": [-30, 15], "missing_points": -30},
            {"name": "phone_verified", "splits": [1], "points": [-20, 5], "missing_points": -20},
            {"name": "account_age_days", "splits": [30], "points": [-10, 10], "missing_points": -10},
            {"name": "kept_merchants", "splits": [1], "points": [-10, 10], "missing_points": -10},
        ],
    },
    version="t-1",
)


@pytest.mark.parametrize(
    ("value", "points"), [(0, 0), (0.99, 0), (1, 20), (4, 20), (5, 50), (500, 50), (None, -5), (float("nan"), -5)]
)
def test_numeric_bins_are_closed_below_and_open_above(value, points):
    assert CARD.variables[0].points_for(value) == points


def test_categorical_bins_look_up_groups_and_default_other_and_missing():
    card = compile_spec(
        {
            "base_points": 0,
            "variables": [
                {
                    "name": "status",
                    "kind": "categorical",
                    "categories": [["a", "b"], ["c"]],
                    "points": [10, -10],
                    "other_points": 1,
                    "missing_points": 2,
                }
            ],
        }
    )
    var = card.variables[0]
    assert [var.points_for(v) for v in ("a", "b", "c", "zzz", None)] == [10, 10, -10, 1, 2]


def test_score_is_base_plus_bin_points_with_sub_scores_by_dimension():
    result = CARD.evaluate(
        {
            "kept_promises": 5,
            "utilisation": 0.1,
            "real_name_verified": 1,
            "phone_verified": 1,
            "account_age_days": 40,
            "kept_merchants": 2,
        }
    )
    assert result.raw_points == 500 + 50 + 10 + 15 + 5 + 10 + 10
    assert result.score == 600
    assert result.sub_scores == {"history": 50, "ability": 10, "identity": 30, "connections": 10}
    assert result.reasons == ()


def test_reasons_rank_by_points_lost_against_the_best_bin_at_most_four():
    result = CARD.evaluate(
        {
            "kept_promises": 2,  # lost 30
            "utilisation": 0.9,  # lost 50
            "real_name_verified": 0,  # lost 45
            "phone_verified": 0,  # lost 25
            "account_age_days": 1,  # lost 20
            "kept_merchants": 0,  # lost 20
        }
    )
    assert [(r.code, r.points_lost) for r in result.reasons] == [
        ("high_utilisation", 50),
        ("identity_not_verified", 45),
        ("few_kept_promises", 30),
        ("phone_not_verified", 25),
    ]


def test_equal_losses_keep_the_cards_order_and_missing_values_give_their_own_reason():
    result = CARD.evaluate(
        {"kept_promises": 5, "utilisation": None, "real_name_verified": 1, "phone_verified": 1, "account_age_days": 1}
    )
    # utilisation None (no limit) loses 10 → "no_limit"; age and merchants both lose 20, card order decides.
    assert [(r.code, r.points_lost) for r in result.reasons] == [
        ("new_account", 20),
        ("few_merchants", 20),
        ("no_limit", 10),
    ]


def test_a_shared_reason_code_is_given_once():
    card = compile_spec(
        {
            "base_points": 600,
            "variables": [
                {"name": "days_since_first_order", "splits": [30], "points": [0, 20], "missing_points": -10},
                {"name": "days_since_last_order", "splits": [30], "points": [5, 0], "missing_points": -5},
            ],
        }
    )
    result = card.evaluate({"days_since_first_order": None, "days_since_last_order": None})
    assert [(r.code, r.variable, r.points_lost) for r in result.reasons] == [
        ("no_orders_yet", "days_since_first_order", 30)
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"base_points": 1}, "needs base_points and variables"),
        ({"variables": [{"name": "x", "splits": [2, 1], "points": [1, 2, 3]}]}, "strictly ascending"),
        ({"variables": [{"name": "x", "splits": [1], "points": [1]}]}, "1 splits need 2 points"),
        ({"variables": [{"name": "x", "points": [1]}, {"name": "x", "points": [1]}]}, "unique"),
        ({"variables": [{"name": "x", "kind": "weird", "points": [1]}]}, "unknown kind"),
        ({"variables": [{"name": "x", "points": ["a"]}]}, "points must be numbers"),
    ],
)
def test_malformed_specs_are_refused(spec, message):
    with pytest.raises(ScorecardSpecError, match=message):
        compile_spec(spec)


# --- the shipped default ----------------------------------------------------------------------


DEFAULT = compile_spec(DEFAULT_SCORECARD_SPEC, version=DEFAULT_SCORECARD_VERSION)
NEW_CONSUMER = {
    "kept_promises": 0,
    "on_time_rate": None,
    "breaches": 0,
    "worst_dpd": 0,
    "days_since_last_breach": None,
    "utilisation": 0.0,
    "orders_in_arrears": 0,
    "recent_charge_failures": 0,
    "days_since_first_order": None,
    "days_since_last_order": None,
    "orders_total": 0,
    "scenarios_used": 0,
    "cancel_rate": None,
    "disputes": 0,
    "real_name_verified": 0,
    "phone_verified": 1,
    "account_age_days": 0,
    "kept_merchants": 0,
}


def test_default_card_scores_every_variable_and_uses_only_known_reason_codes():
    assert DEFAULT.variable_names == VARIABLE_NAMES
    assert {spec.reason_code for spec in VARIABLES} | {"no_repayment_history", "no_orders_yet", "no_limit"} == set(
        SCORE_REASON_TEXTS
    )


def test_default_card_new_consumer_scores_580_and_625_once_verified():
    assert DEFAULT.evaluate(NEW_CONSUMER).score == 580
    assert DEFAULT.evaluate({**NEW_CONSUMER, "real_name_verified": 1}).score == 625


def test_default_card_long_clean_record_scores_810_and_a_bad_one_is_clipped_to_350():
    best = {
        **NEW_CONSUMER,
        "kept_promises": 40,
        "on_time_rate": 1.0,
        "days_since_first_order": 400,
        "days_since_last_order": 3,
        "orders_total": 45,
        "scenarios_used": 4,
        "cancel_rate": 0.05,
        "real_name_verified": 1,
        "account_age_days": 500,
        "kept_merchants": 5,
    }
    worst = {
        **NEW_CONSUMER,
        "on_time_rate": 0.5,
        "breaches": 3,
        "worst_dpd": 60,
        "days_since_last_breach": 5,
        "utilisation": 0.95,
        "orders_in_arrears": 2,
        "recent_charge_failures": 4,
        "cancel_rate": 0.7,
        "disputes": 5,
        "phone_verified": 0,
    }
    assert DEFAULT.evaluate(best).score == 810
    assert DEFAULT.evaluate(best).reasons == ()
    assert DEFAULT.evaluate(worst).score == 350
    assert [r.code for r in DEFAULT.evaluate(worst).reasons] == [
        "late_payments",
        "orders_in_arrears",
        "few_kept_promises",
        "past_breaches",
    ]


def test_score_alone_is_the_score_of_a_full_evaluation():
    # The charge run compares scores with CompiledCard.score; it must never disagree with evaluate().
    cases = [
        NEW_CONSUMER,
        {**NEW_CONSUMER, "real_name_verified": 1, "kept_promises": 1, "on_time_rate": 1.0, "kept_merchants": 1},
        {**NEW_CONSUMER, "breaches": 3, "worst_dpd": 60, "utilisation": 0.95, "phone_verified": 0},  # clipped
        {**NEW_CONSUMER, "kept_promises": 40, "days_since_first_order": 400, "account_age_days": 500},
        {},  # every variable missing
    ]
    for values in cases:
        assert DEFAULT.score(values) == DEFAULT.evaluate(values).score


def test_default_card_reasons_for_a_new_consumer_say_no_history_yet():
    reasons = DEFAULT.evaluate(NEW_CONSUMER).reasons
    assert [(r.code, r.variable, r.points_lost) for r in reasons] == [
        ("few_kept_promises", "kept_promises", 60),
        ("identity_not_verified", "real_name_verified", 45),
        ("few_merchants", "kept_merchants", 30),
        ("no_orders_yet", "days_since_first_order", 25),
    ]


def test_the_migration_ships_exactly_the_default_spec():
    migration = importlib.import_module("scoring.migrations.0003_default_scorecard")
    assert migration.SPEC == DEFAULT_SCORECARD_SPEC
    assert migration.VERSION == DEFAULT_SCORECARD_VERSION
