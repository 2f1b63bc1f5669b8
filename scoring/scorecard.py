"""Scorecard scaling and evaluation: a table lookup, no fitting library at run time.

**Scaling (points to double the odds).** A score is a monotone transform of the
good:bad odds the scorecard predicts::

    score = offset + factor · ln(odds)
    factor = PDO / ln 2
    offset = anchor_score − factor · ln(anchor_odds)

With the platform's anchor (600 points at 19:1 good:bad odds, i.e. a 5 % bad rate, and
50 points to double the odds): factor = 72.1348, offset = 387.6036; 650 points is 38:1,
550 points is 9.5:1. Scores are clipped to 350–950 (the Sesame-style range).

**Evaluation.** A card is ``base_points`` plus, for every variable, the points of the
bin its value falls in. Numeric bins are given by ascending ``splits``: bin *i* is
``[splits[i-1], splits[i])`` (the first is open below, the last open above), the same
convention as optbinning's split points. A value of ``None`` (no data) takes
``missing_points``. Categorical variables list their category groups. A trained card
spreads the logistic regression's intercept into ``base_points`` and gives each bin
``−factor · β · WoE`` points, so the sum is exactly the scaled log-odds.

**Reasons.** For every variable, the points lost are the best bin's points minus the
points the consumer got; the reasons are the variables with the largest loss (at most
four, ties in the card's order), each a stable code with a sentence in English and
zh-hans (``scoring.features``).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .features import VARIABLES_BY_NAME

SCORE_MIN = 350
SCORE_MAX = 950
DEFAULT_PDO = 50
DEFAULT_ANCHOR_SCORE = 600
DEFAULT_ANCHOR_ODDS = 19  # good:bad, i.e. a 5 % bad rate at 600
MAX_REASONS = 4
OTHER_DIMENSION = "other"


class ScorecardSpecError(ValueError):
    """A scorecard spec that cannot be evaluated (malformed bins, points that do not match)."""


# --------------------------------------------------------------------------- scaling


def scaling_factor(pdo: float = DEFAULT_PDO) -> float:
    """Points per unit of ln(odds): ``PDO / ln 2``."""
    return pdo / math.log(2)


def scaling_offset(
    anchor_score: float = DEFAULT_ANCHOR_SCORE, anchor_odds: float = DEFAULT_ANCHOR_ODDS, pdo: float = DEFAULT_PDO
) -> float:
    """The score at odds 1:1: ``anchor_score − factor · ln(anchor_odds)``."""
    return anchor_score - scaling_factor(pdo) * math.log(anchor_odds)


def score_for_odds(
    odds: float,
    *,
    pdo: float = DEFAULT_PDO,
    anchor_score: float = DEFAULT_ANCHOR_SCORE,
    anchor_odds: float = DEFAULT_ANCHOR_ODDS,
) -> float:
    """The unclipped score for good:bad ``odds`` (19 → 600, 38 → 650 with the defaults)."""
    if odds <= 0:
        raise ValueError("odds must be positive")
    return scaling_offset(anchor_score, anchor_odds, pdo) + scaling_factor(pdo) * math.log(odds)


def odds_for_score(
    score: float,
    *,
    pdo: float = DEFAULT_PDO,
    anchor_score: float = DEFAULT_ANCHOR_SCORE,
    anchor_odds: float = DEFAULT_ANCHOR_ODDS,
) -> float:
    """The good:bad odds a score stands for (the inverse of :func:`score_for_odds`)."""
    return math.exp((score - scaling_offset(anchor_score, anchor_odds, pdo)) / scaling_factor(pdo))


def bad_rate_for_score(score: float, **scaling: float) -> float:
    """The expected bad rate at ``score``: ``1 / (1 + odds)`` (600 → 5 %)."""
    return 1.0 / (1.0 + odds_for_score(score, **scaling))


def clip_score(value: float) -> int:
    """Round half up and clip to 350–950."""
    return int(min(max(math.floor(value + 0.5), SCORE_MIN), SCORE_MAX))


# --------------------------------------------------------------------------- compiled cards


@dataclass(frozen=True)
class CompiledVariable:
    """One variable of a card, ready for lookups."""

    name: str
    dimension: str
    kind: str
    splits: tuple[float, ...] = ()
    category_index: Mapping[str, int] = field(default_factory=dict)
    points: tuple[int, ...] = ()
    missing_points: int = 0
    other_points: int = 0
    best_points: int = 0
    worst_points: int = 0

    def points_for(self, value: Any) -> int:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.missing_points
        if self.kind == "categorical":
            index = self.category_index.get(str(value))
            return self.other_points if index is None else self.points[index]
        return self.points[bisect_right(self.splits, float(value))]


@dataclass(frozen=True)
class ScoreReason:
    """A variable that cost the consumer points against its best bin."""

    code: str
    variable: str
    points_lost: int


@dataclass(frozen=True)
class ScoreResult:
    """The outcome of one evaluation: the clipped score, points by dimension and the top reasons."""

    score: int
    raw_points: int
    sub_scores: dict[str, int]
    reasons: tuple[ScoreReason, ...]
    points: dict[str, int]


@dataclass(frozen=True)
class CompiledCard:
    """A scorecard spec checked and indexed for fast evaluation."""

    version: str
    base_points: int
    variables: tuple[CompiledVariable, ...]

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def dimension_ranges(self) -> dict[str, tuple[int, int]]:
        """Worst and best points each dimension can reach (for showing a sub-score on a scale)."""
        ranges: dict[str, tuple[int, int]] = {}
        for var in self.variables:
            low, high = ranges.get(var.dimension, (0, 0))
            ranges[var.dimension] = (low + var.worst_points, high + var.best_points)
        return ranges

    def score(self, values: Mapping[str, Any]) -> int:
        """The score :meth:`evaluate` gives ``values``, without its sub-scores and reasons.

        For callers that only compare scores (the charge run re-scores a chunk of consumers and writes
        the ones that moved): building the reasons costs more than the lookups.
        """
        return clip_score(self.base_points + sum(var.points_for(values.get(var.name)) for var in self.variables))

    def evaluate(self, values: Mapping[str, Any]) -> ScoreResult:
        """Score ``values`` (a mapping of variable name → number/None); a missing key counts as no data."""
        total = self.base_points
        sub_scores: dict[str, int] = {}
        points: dict[str, int] = {}
        losses: list[tuple[int, int, ScoreReason]] = []
        for position, var in enumerate(self.variables):
            got = var.points_for(values.get(var.name))
            points[var.name] = got
            total += got
            sub_scores[var.dimension] = sub_scores.get(var.dimension, 0) + got
            lost = var.best_points - got
            if lost > 0:
                losses.append(
                    (
                        -lost,
                        position,
                        ScoreReason(
                            code=_reason_code(var.name, values.get(var.name)), variable=var.name, points_lost=lost
                        ),
                    )
                )
        losses.sort()
        # Two variables can share a reason ("no orders yet"): each code is given once, at its largest loss.
        reasons: list[ScoreReason] = []
        for _loss, _position, item in losses:
            if item.code not in {r.code for r in reasons}:
                reasons.append(item)
            if len(reasons) == MAX_REASONS:
                break
        return ScoreResult(
            score=clip_score(total), raw_points=total, sub_scores=sub_scores, reasons=tuple(reasons), points=points
        )


def _reason_code(name: str, value: Any) -> str:
    spec = VARIABLES_BY_NAME.get(name)
    if spec is None:
        return name
    if value is None and spec.missing_reason_code:
        return spec.missing_reason_code
    return spec.reason_code


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScorecardSpecError(f"{where}: points must be numbers")
    return round(value)


def compile_spec(spec: Mapping[str, Any], *, version: str = "") -> CompiledCard:
    """Check a spec (``{"base_points", "variables": [...]}``) and index it; raises :class:`ScorecardSpecError`."""
    if not isinstance(spec, Mapping) or "variables" not in spec:
        raise ScorecardSpecError("a scorecard spec needs base_points and variables")
    base = _as_int(spec.get("base_points", 0), "base_points")
    compiled: list[CompiledVariable] = []
    seen: set[str] = set()
    for raw in spec["variables"]:
        name = str(raw.get("name", ""))
        if not name or name in seen:
            raise ScorecardSpecError(f"variable names must be present and unique ({name!r})")
        seen.add(name)
        known = VARIABLES_BY_NAME.get(name)
        dimension = str(raw.get("dimension") or (known.dimension if known else OTHER_DIMENSION))
        kind = raw.get("kind", "numeric")
        points = tuple(_as_int(p, name) for p in raw.get("points", ()))
        missing = _as_int(raw.get("missing_points", 0), name)
        if kind == "numeric":
            splits = tuple(float(s) for s in raw.get("splits", ()))
            if list(splits) != sorted(set(splits)):
                raise ScorecardSpecError(f"{name}: splits must be strictly ascending")
            if len(points) != len(splits) + 1:
                raise ScorecardSpecError(f"{name}: {len(splits)} splits need {len(splits) + 1} points")
            every = (*points, missing)
            compiled.append(
                CompiledVariable(
                    name=name,
                    dimension=dimension,
                    kind=kind,
                    splits=splits,
                    points=points,
                    missing_points=missing,
                    best_points=max(every),
                    worst_points=min(every),
                )
            )
        elif kind == "categorical":
            groups: Sequence[Sequence[Any]] = raw.get("categories", ())
            if len(points) != len(groups):
                raise ScorecardSpecError(f"{name}: one points value per category group")
            index = {str(c): i for i, group in enumerate(groups) for c in group}
            other = _as_int(raw.get("other_points", 0), name)
            every = (*points, missing, other)
            compiled.append(
                CompiledVariable(
                    name=name,
                    dimension=dimension,
                    kind=kind,
                    category_index=index,
                    points=points,
                    missing_points=missing,
                    other_points=other,
                    best_points=max(every),
                    worst_points=min(every),
                )
            )
        else:
            raise ScorecardSpecError(f"{name}: unknown kind {kind!r}")
    return CompiledCard(version=version, base_points=base, variables=tuple(compiled))
