"""Small, dependency-free statistics shared by training and monitoring: score buckets and PSI.

Pure Python on purpose: the monitoring page and the training command both need them,
and the web process should not import numpy/pandas to draw a page.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from itertools import pairwise

# Score buckets for distributions and PSI: the product's bands, with the wide ends split.
BUCKET_EDGES: tuple[int, ...] = (350, 450, 500, 550, 600, 650, 700, 750, 800, 951)
# A bucket empty on one side would make PSI infinite; this floor is the usual convention.
PSI_EPSILON = 1e-4


def bucket_label(low: int, high: int) -> str:
    return f"{low}-{high - 1}"


BUCKET_LABELS: tuple[str, ...] = tuple(bucket_label(lo, hi) for lo, hi in pairwise(BUCKET_EDGES))


def bucket_of(score: int) -> str:
    """The label of the bucket ``score`` falls in (scores outside 350–950 go to the end buckets)."""
    for low, high, label in zip(BUCKET_EDGES, BUCKET_EDGES[1:], BUCKET_LABELS, strict=False):
        if score < high:
            return label if score >= low else BUCKET_LABELS[0]
    return BUCKET_LABELS[-1]


def score_distribution(scores: Iterable[int]) -> dict[str, float]:
    """Share of ``scores`` in each bucket (every bucket present, shares summing to 1; empty → all 0)."""
    counts = dict.fromkeys(BUCKET_LABELS, 0)
    total = 0
    for score in scores:
        counts[bucket_of(int(score))] += 1
        total += 1
    return {label: (count / total if total else 0.0) for label, count in counts.items()}


def psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """Population stability index Σ (a − e) · ln(a / e) over the buckets of ``expected``.

    Rule of thumb: < 0.1 stable, 0.1–0.25 worth a look, > 0.25 the population has shifted.
    """
    total = 0.0
    for label, share in expected.items():
        e = max(float(share), PSI_EPSILON)
        a = max(float(actual.get(label, 0.0)), PSI_EPSILON)
        total += (a - e) * math.log(a / e)
    return total
