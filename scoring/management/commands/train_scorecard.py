"""``manage.py train_scorecard``: fit a new scorecard on the platform's own outcomes and save it inactive.

Reads approved order decisions whose performance window has passed (features from
their snapshots, label "breached within the window"), fits a monotonic WoE scorecard
(``scoring.training``), prints AUC, KS, Gini on a hold-out, a cut-off table and the PSI
against the active scorecard, and saves the card as a new, inactive version. Staff
review it and activate it in the admin. A set too small, or with one outcome only,
stops the command with a message saying so (and saves nothing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scoring.choices import ScorecardSource
from scoring.services import active_compiled_card, scorecard_create
from scoring.training import (
    DEFAULT_MIN_PER_CLASS,
    DEFAULT_MIN_ROWS,
    DEFAULT_TEST_SIZE,
    DEFAULT_WINDOW_DAYS,
    TrainingDataError,
    fit_scorecard,
    platform_training_set,
    psi_against,
)


class Command(BaseCommand):
    help = "Fit a new scorecard on decisions and their outcomes; save it inactive for staff to review."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--window-days", type=int, default=DEFAULT_WINDOW_DAYS, help="Performance window.")
        parser.add_argument("--as-of", type=str, default="", help="Train as of this ISO date (default: now).")
        parser.add_argument("--min-rows", type=int, default=DEFAULT_MIN_ROWS)
        parser.add_argument("--min-per-class", type=int, default=DEFAULT_MIN_PER_CLASS)
        parser.add_argument("--test-size", type=float, default=DEFAULT_TEST_SIZE)
        parser.add_argument("--card-version", type=str, default="", help="Version name (default: trained-<timestamp>).")
        parser.add_argument("--dry-run", action="store_true", help="Report only; save nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = timezone.now()
        if options["as_of"]:
            try:
                as_of = datetime.fromisoformat(options["as_of"])
            except ValueError:
                raise CommandError("--as-of must be an ISO date, e.g. 2026-11-01") from None
            if timezone.is_naive(as_of):
                as_of = timezone.make_aware(as_of)
        data = platform_training_set(window_days=options["window_days"], as_of=as_of)
        try:
            result = fit_scorecard(
                data.frame,
                data.labels,
                groups=data.groups,
                test_size=options["test_size"],
                min_rows=options["min_rows"],
                min_per_class=options["min_per_class"],
            )
        except TrainingDataError as exc:
            raise CommandError(str(exc)) from None

        out = self.stdout
        out.write(
            f"Training set: {len(data.labels)} decisions, bad rate {result.bad_rate:.2%} "
            f"(window {options['window_days']} days, as of {as_of:%Y-%m-%d})"
        )
        out.write(
            f"Hold-out ({result.holdout_rows} decisions): AUC {result.auc:.3f}  KS {result.ks:.3f}  "
            f"Gini {result.gini:.3f}"
        )
        out.write("Cut-off  approved  approval rate  bad rate")
        for row in result.cutoffs:
            bad = "—" if row["bad_rate"] is None else f"{row['bad_rate']:.2%}"
            out.write(f"{row['cutoff']:>7}  {row['approved']:>8}  {row['approval_rate']:>13.2%}  {bad:>8}")
        metrics = result.metrics()
        active = active_compiled_card()
        if active is not None:
            card_row, card = active
            holdout = data.frame.loc[result.holdout_index]
            value = psi_against(card, holdout, result.holdout_scores)
            metrics["psi_vs_active"] = {"version": card_row.version, "psi": round(value, 4)}
            out.write(f"PSI against the active scorecard {card_row.version}: {value:.3f}")
        else:
            out.write("PSI against the active scorecard: no scorecard is active.")
        if options["dry_run"]:
            out.write("Dry run: nothing saved.")
            return
        version = options["card_version"] or f"trained-{timezone.now():%Y%m%d-%H%M%S}"
        card = scorecard_create(
            actor=None,
            version=version,
            spec=result.spec,
            source=ScorecardSource.TRAINED,
            metrics=metrics,
            reference_distribution=result.reference_distribution,
            notes=f"train_scorecard: {len(data.labels)} decisions, window {options['window_days']} days",
        )
        out.write(self.style.SUCCESS(f"Saved scorecard {card.version} (inactive). Activate it in the admin."))
