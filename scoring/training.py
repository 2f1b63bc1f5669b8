"""Training a scorecard: monotonic WoE binning (optbinning) + logistic regression (scikit-learn).

The fitting core, :func:`fit_scorecard`, takes any table of features and a 0/1 label
(1 = bad) and returns a card in the platform's serving format (``base_points`` plus bins
and integer points, see ``scoring.scorecard``) with its hold-out metrics. It is what
``manage.py train_scorecard`` runs on the platform's own outcomes
(:func:`platform_training_set`), and what the tests run on a public credit data set.

Method:

1. split off a hold-out (by consumer when groups are given, so one person's decisions
   never sit on both sides; stratified otherwise);
2. bin every variable on the training part with optbinning's ``OptimalBinning``
   (mixed-integer programming over pre-bins) under a monotonic event-rate constraint
   (``auto_asc_desc``: ascending or descending, whichever fits), so every card reads
   "more of this is always better" or "always worse" and can be explained;
3. fit scikit-learn's ``LogisticRegression`` on the bins' weights of evidence;
4. scale: ``base_points = offset − factor·β₀`` and each bin ``−factor·β·WoE`` (rounded),
   so the sum is the model's ln(good:bad odds) on the platform's PDO scale;
5. score the hold-out *with the rounded table* (exactly what serving will compute) and
   report AUC, KS, Gini, a cut-off table and the score distribution.

numpy, pandas, scikit-learn and optbinning are imported here only: serving never needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .scorecard import (
    DEFAULT_ANCHOR_ODDS,
    DEFAULT_ANCHOR_SCORE,
    DEFAULT_PDO,
    CompiledCard,
    compile_spec,
    scaling_factor,
    scaling_offset,
)
from .stats import score_distribution

if TYPE_CHECKING:
    import pandas as pd

CUTOFFS: tuple[int, ...] = tuple(range(450, 801, 25))
DEFAULT_MIN_ROWS = 200
DEFAULT_MIN_PER_CLASS = 20
DEFAULT_TEST_SIZE = 0.3
DEFAULT_WINDOW_DAYS = 90
RANDOM_STATE = 20261125


class TrainingDataError(ValueError):
    """The training set cannot support a fit (too small, or only one class); the message says why."""


@dataclass
class FitResult:
    """A fitted card and how it did on the hold-out."""

    spec: dict[str, Any]
    auc: float
    ks: float
    gini: float
    cutoffs: list[dict[str, Any]]
    train_rows: int
    holdout_rows: int
    bad_rate: float
    information_values: dict[str, float]
    holdout_scores: list[int] = field(repr=False)
    holdout_labels: list[int] = field(repr=False)
    holdout_index: list[Any] = field(repr=False)
    reference_distribution: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """What is stored on the scorecard row (JSON-safe)."""
        return {
            "auc": round(self.auc, 4),
            "ks": round(self.ks, 4),
            "gini": round(self.gini, 4),
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "bad_rate": round(self.bad_rate, 4),
            "cutoffs": self.cutoffs,
            "information_values": {k: round(v, 4) for k, v in self.information_values.items()},
        }


def check_training_set(labels: Sequence[int], *, min_rows: int, min_per_class: int) -> None:
    """Refuse a set that cannot support a fit, saying what is missing."""
    n = len(labels)
    bads = sum(1 for y in labels if y)
    goods = n - bads
    if n < min_rows:
        raise TrainingDataError(
            f"Training stopped: {n} decisions with a complete performance window; at least {min_rows} are needed."
        )
    if bads == 0 or goods == 0:
        kind = "good (no breach)" if bads == 0 else "bad (breached)"
        raise TrainingDataError(f"Training stopped: all {n} decisions are {kind}; both outcomes are needed.")
    if min(bads, goods) < min_per_class:
        raise TrainingDataError(
            f"Training stopped: only {bads} bad and {goods} good decisions; "
            f"at least {min_per_class} of each are needed."
        )


def _split(frame: pd.DataFrame, y: Any, groups: Sequence[Any] | None, test_size: float) -> tuple[Any, Any]:
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    indices = list(range(len(frame)))
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=RANDOM_STATE)
        train_idx, test_idx = next(splitter.split(frame, y, groups=list(groups)))
        return train_idx, test_idx
    return train_test_split(indices, test_size=test_size, random_state=RANDOM_STATE, stratify=y)


def _variable_spec(name: str, binned: Any, beta: float, factor: float, categorical: bool) -> dict[str, Any]:
    """One variable's bins and points from its fitted binning and its regression coefficient."""
    table = binned.binning_table.build()
    woe = [float(w) for w in table["WoE"].iloc[: len(table) - 1]]  # the last row is "Totals"
    bins = woe[:-2]  # then "Special", "Missing"
    missing_woe = woe[-1]

    def points(w: float) -> int:
        return round(-factor * beta * w)

    entry: dict[str, Any] = {"name": name, "points": [points(w) for w in bins], "missing_points": points(missing_woe)}
    if categorical:
        entry["kind"] = "categorical"
        entry["categories"] = [[str(c) for c in group] for group in binned.splits]
        entry["other_points"] = 0
    else:
        entry["splits"] = [round(float(s), 6) for s in binned.splits]
    return entry


def _ks(labels: Sequence[int], risk: Sequence[float]) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, risk)
    return float(max(tpr - fpr))


def cutoff_table(
    scores: Sequence[int], labels: Sequence[int], cutoffs: Sequence[int] = CUTOFFS
) -> list[dict[str, Any]]:
    """Approval rate and bad rate among the approved, if everyone scoring ≥ cut-off were approved."""
    n = len(scores)
    rows = []
    for cutoff in cutoffs:
        approved = [int(y) for s, y in zip(scores, labels, strict=True) if s >= cutoff]
        rows.append(
            {
                "cutoff": cutoff,
                "approved": len(approved),
                "approval_rate": round(len(approved) / n, 4) if n else 0.0,
                "bad_rate": round(sum(approved) / len(approved), 4) if approved else None,
            }
        )
    return rows


def evaluate_frame(card: CompiledCard, frame: pd.DataFrame) -> list[int]:
    """Score every row of ``frame`` with a card (the served table lookup)."""
    columns = [c for c in card.variable_names if c in frame.columns]
    records = frame[columns].astype(object).where(frame[columns].notna(), None).to_dict("records")
    return [card.evaluate(row).score for row in records]


def fit_scorecard(
    frame: pd.DataFrame,
    labels: Sequence[int],
    *,
    categorical: Sequence[str] = (),
    groups: Sequence[Any] | None = None,
    pdo: int = DEFAULT_PDO,
    anchor_score: int = DEFAULT_ANCHOR_SCORE,
    anchor_odds: int = DEFAULT_ANCHOR_ODDS,
    test_size: float = DEFAULT_TEST_SIZE,
    min_rows: int = DEFAULT_MIN_ROWS,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
) -> FitResult:
    """Fit a monotonic WoE scorecard on ``frame`` (one column per variable) and ``labels`` (1 = bad).

    Raises :class:`TrainingDataError` when the set is too small or has one class.
    """
    import numpy as np
    from optbinning import BinningProcess
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    y_all = np.asarray([1 if v else 0 for v in labels], dtype=int)
    check_training_set(list(y_all), min_rows=min_rows, min_per_class=min_per_class)
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    # A variable with no data, or one value only, carries no information (and cannot be binned):
    # the card leaves it out rather than give it made-up points.
    names = [c for c in frame.columns if frame[c].dropna().nunique() >= 2]
    if not names:
        raise TrainingDataError("Training stopped: no variable has more than one value.")
    frame = frame[names]
    train_idx, test_idx = _split(frame, y_all, groups, test_size)
    x_train, y_train = frame.iloc[train_idx], y_all[train_idx]
    x_test, y_test = frame.iloc[test_idx], y_all[test_idx]
    if len(set(y_test)) < 2 or len(set(y_train)) < 2:
        raise TrainingDataError("Training stopped: the hold-out or training part has only one outcome.")

    categorical = [c for c in categorical if c in names]
    process = BinningProcess(
        names,
        categorical_variables=categorical,
        binning_fit_params={n: {"monotonic_trend": "auto_asc_desc"} for n in names if n not in categorical},
    )
    process.fit(x_train, y_train)
    woe_train = process.transform(x_train, metric="woe", metric_missing="empirical", metric_special="empirical")
    model = LogisticRegression(max_iter=1000)
    model.fit(woe_train[names], y_train)

    factor = scaling_factor(pdo)
    offset = scaling_offset(anchor_score, anchor_odds, pdo)
    betas = dict(zip(names, (float(b) for b in model.coef_[0]), strict=True))
    spec: dict[str, Any] = {
        "base_points": round(offset - factor * float(model.intercept_[0])),
        "variables": [
            _variable_spec(n, process.get_binned_variable(n), betas[n], factor, n in categorical) for n in names
        ],
    }
    card = compile_spec(spec)
    test_scores = evaluate_frame(card, x_test)
    all_scores = evaluate_frame(card, frame)
    # Higher score = lower risk, so the risk ranking is the negated score.
    risk = [-s for s in test_scores]
    auc = float(roc_auc_score(y_test, risk))
    information_values = {n: float(process.get_binned_variable(n).binning_table.iv) for n in names}
    return FitResult(
        spec=spec,
        auc=auc,
        ks=_ks(list(y_test), risk),
        gini=2 * auc - 1,
        cutoffs=cutoff_table(test_scores, list(y_test)),
        train_rows=len(train_idx),
        holdout_rows=len(test_idx),
        bad_rate=float(y_all.mean()),
        information_values=information_values,
        holdout_scores=test_scores,
        holdout_labels=[int(v) for v in y_test],
        holdout_index=[frame.index[i] for i in test_idx],
        reference_distribution=score_distribution(all_scores),
    )


# --------------------------------------------------------------------------- the platform's own outcomes


@dataclass
class TrainingSet:
    """Decisions with a complete performance window: their snapshot variables, label and consumer."""

    frame: pd.DataFrame
    labels: list[int]
    groups: list[int]
    decision_ids: list[int]


def platform_training_set(*, window_days: int = DEFAULT_WINDOW_DAYS, as_of: datetime | None = None) -> TrainingSet:
    """Approved order decisions old enough to have a full performance window, labelled.

    Features are the scorecard variables stored in each decision's snapshot — what was
    known at the decision, nothing later (no leakage). The label is 1 ("breached")
    when the consumer has a promise record that went bad (breached, or breached and
    later recovered) within ``window_days`` after the decision: an order left unpaid
    past the grace period. Declined decisions have no outcome and are left out (no
    reject inference).
    """
    import pandas as pd
    from django.db.models import DateTimeField, DurationField, Exists, ExpressionWrapper, OuterRef, Value
    from django.utils import timezone

    from consumers.choices import PromiseOutcome
    from consumers.models import PromiseRecord

    from .choices import ORDER_CHANNELS, DecisionOutcome
    from .features import VARIABLE_NAMES
    from .models import AdmissionDecision

    window = timedelta(days=window_days)
    as_of = as_of or timezone.now()
    went_bad = PromiseRecord.objects.filter(
        consumer=OuterRef("consumer"),
        outcome__in=[PromiseOutcome.BREACHED, PromiseOutcome.RECOVERED],
        recorded_at__gt=OuterRef("created_at"),
        recorded_at__lte=ExpressionWrapper(
            OuterRef("created_at") + Value(window, output_field=DurationField()), output_field=DateTimeField()
        ),
    )
    rows = (
        AdmissionDecision.objects.filter(
            outcome=DecisionOutcome.APPROVED, channel__in=sorted(ORDER_CHANNELS), created_at__lte=as_of - window
        )
        .annotate(bad=Exists(went_bad))
        .order_by("pk")
        .values_list("pk", "consumer_id", "snapshot", "bad")
    )
    records, labels, groups, ids = [], [], [], []
    for pk, consumer_id, snapshot, bad in rows.iterator(chunk_size=5000):
        variables = (snapshot or {}).get("features")
        if not isinstance(variables, dict):
            continue
        records.append({name: variables.get(name) for name in VARIABLE_NAMES})
        labels.append(1 if bad else 0)
        groups.append(consumer_id)
        ids.append(pk)
    frame = pd.DataFrame.from_records(records, columns=list(VARIABLE_NAMES)).astype(float)
    return TrainingSet(frame=frame, labels=labels, groups=groups, decision_ids=ids)


def psi_against(card: CompiledCard, frame: pd.DataFrame, new_scores: Sequence[int]) -> float:
    """PSI of the new card's scores against ``card``'s scores on the same population."""
    from .stats import psi

    return psi(score_distribution(evaluate_frame(card, frame)), score_distribution(new_scores))
