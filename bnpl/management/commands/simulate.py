"""``manage.py simulate``: a history of days of pay-later use, driven through the real services and jobs.

    manage.py simulate --days 90 --consumers 5000 --seed 7

The history ends at the start of today (Beijing time), so the merchant dashboard and ``reminder_report`` show it
as recent; ``--start`` fixes the first day instead. What it builds and how people behave: docs/simulation.md.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from bnpl.models import CreditOrder
from bnpl.simulation.engine import DayProgress, Simulation, SimulationConfig
from bnpl.simulation.population import DEFAULT_ORDER_RATE
from bnpl.simulation.world import run_exists, run_prefix

#: Orders whose merchant order number starts with one of these were made by seed_demo or by a simulation.
GENERATED_ORDER_PREFIXES = ("DEMO-", "SIM")


class Command(BaseCommand):
    help = "Simulate days of merchants and consumers through the real services and scheduled jobs (docs/simulation.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--consumers", type=int, default=500)
        parser.add_argument("--seed", type=int, default=7, help="The same seed gives the same history.")
        parser.add_argument("--start", default="", help="First day (YYYY-MM-DD); default: --days before today.")
        parser.add_argument(
            "--order-rate", type=float, default=DEFAULT_ORDER_RATE, help="Mean orders per consumer per day."
        )
        parser.add_argument(
            "--tick-minutes",
            type=int,
            default=60,
            help="Jobs declared more often than this run once per tick (they sweep what is due).",
        )
        parser.add_argument(
            "--control-share",
            type=float,
            default=0.2,
            help="BNPL_REMINDER_CONTROL_SHARE for the run, so reminder_report has a control group.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even though the database holds orders made by neither seed_demo nor a simulation.",
        )
        parser.add_argument("--json", action="store_true", help="Also print the summary's counts as one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        config = self._config(options)
        self._refuse_unsafe(config, force=options["force"])
        verbose = options["verbosity"] >= 2
        self.stdout.write(
            f"Simulating {config.days} days from {config.start:%Y-%m-%d} for {config.consumers} consumers "
            f"(seed {config.seed}, prefix {run_prefix(config.seed)})…"
        )
        started = time.monotonic()
        if not verbose:
            logging.disable(logging.INFO)  # the services log every registration and order at INFO
        try:
            summary = Simulation(config, on_day=self._progress(config, started)).run()
        finally:
            logging.disable(logging.NOTSET)
        elapsed = time.monotonic() - started
        for line in summary.lines():
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(f"Done in {elapsed:.0f} s."))
        if verbose:
            self.stdout.write(f"Merchants and consumers built in {summary.build_seconds} s.")
            runs = summary.job_runs.items()
            self.stdout.write("Job runs (runs, s): " + ", ".join(f"{k} {n} {s}" for k, (n, s) in runs))
        if options["json"]:
            self.stdout.write(json.dumps({**summary.counts(), "seconds": round(elapsed, 1)}, ensure_ascii=False))

    def _config(self, options: dict[str, Any]) -> SimulationConfig:
        if options["days"] < 1 or options["consumers"] < 1:
            raise CommandError("--days and --consumers must be at least 1.")
        if options["tick_minutes"] < 1 or not 0 <= options["control_share"] <= 1 or options["order_rate"] <= 0:
            raise CommandError("--tick-minutes ≥ 1, 0 ≤ --control-share ≤ 1 and --order-rate > 0, please.")
        if options["consumers"] > 99999:
            raise CommandError("At most 99,999 consumers (their phone numbers have five digits for the person).")
        today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        if options["start"]:
            try:
                day = datetime.strptime(options["start"], "%Y-%m-%d")
            except ValueError as exc:
                raise CommandError("--start takes a date as YYYY-MM-DD.") from exc
            start = timezone.make_aware(day)
        else:
            start = today - timedelta(days=options["days"])
        if start + timedelta(days=options["days"]) > today + timedelta(days=1):
            raise CommandError("The simulated history must end by tomorrow: it is a history, not a forecast.")
        return SimulationConfig(
            seed=options["seed"],
            days=options["days"],
            consumers=options["consumers"],
            start=start,
            order_rate=options["order_rate"],
            tick=timedelta(minutes=options["tick_minutes"]),
            control_share=options["control_share"],
        )

    def _refuse_unsafe(self, config: SimulationConfig, *, force: bool) -> None:
        """Never on a database with real orders (unless forced), never twice with one seed.

        A simulation writes merchants, consumers, ledger postings, settlement batches and payouts dated in the past;
        on a database with real business those would mix into real settlements and reports.
        """
        if run_exists(config.seed):
            raise CommandError(
                f"A simulation with seed {config.seed} already ran on this database "
                f"(logins {run_prefix(config.seed)}-…): use another --seed or a fresh database."
            )
        generated = Q()
        for prefix in GENERATED_ORDER_PREFIXES:
            generated |= Q(out_order_no__startswith=prefix)
        foreign = CreditOrder.objects.exclude(generated).count()
        if foreign and not force:
            raise CommandError(
                f"This database holds {foreign} orders made by neither seed_demo nor a simulation. Simulated history "
                "would mix into their settlements and reports; run it on a database of its own (or pass --force)."
            )

    def _progress(self, config: SimulationConfig, started: float):
        def report(day: DayProgress) -> None:
            self.stdout.write(
                f"day {day.day:>3}/{config.days} {day.date}: {day.placed} orders placed, {day.declined} declined, "
                f"{day.completed} completed, {day.charged} charged  [{time.monotonic() - started:.0f} s]"
            )

        return report
