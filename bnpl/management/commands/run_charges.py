"""``manage.py run_charges``: one charge run in the foreground (the same work as the every-minute job).

For operators (a backlog after an outage), tests and benchmarks. Output is for operators and stays English,
like Django's own commands. Several can run at once, on one machine or many: they share the due orders.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bnpl.charging import reconcile_unknown_attempts, run_charges


class Command(BaseCommand):
    help = "Charge every due credit order this worker can claim (and retries that are due), then exit."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=None, help="Orders claimed per chunk (default 200).")
        parser.add_argument("--threads", type=int, default=None, help="Concurrent gateway calls (default 16).")
        parser.add_argument("--max-orders", type=int, default=None, help="Stop after this many attempts.")
        parser.add_argument(
            "--resend-pending-after",
            type=int,
            default=None,
            metavar="SECONDS",
            help="Resend pending attempts older than this (default BNPL_CHARGE_RESEND_PENDING_AFTER_SECONDS).",
        )
        parser.add_argument(
            "--time-budget", type=int, default=None, metavar="SECONDS", help="Stop taking chunks after this long."
        )
        parser.add_argument(
            "--reconcile", action="store_true", help="Reconcile unknown attempts instead of running charges."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reconcile"]:
            run = reconcile_unknown_attempts(chunk_size=options["chunk_size"], threads=options["threads"])
        else:
            resend = options["resend_pending_after"]
            budget = options["time_budget"]
            run = run_charges(
                chunk_size=options["chunk_size"],
                threads=options["threads"],
                max_orders=options["max_orders"],
                resend_pending_after=None if resend is None else timedelta(seconds=resend),
                time_budget=None if budget is None else timedelta(seconds=budget),
            )
        self.stdout.write(
            f"{run.kind} run #{run.pk} {run.status}: claimed {run.claimed}, resent {run.resent}, "
            f"succeeded {run.succeeded} ({run.succeeded_amount}), declined {run.declined}, "
            f"unknown {run.unknown}, errors {run.errors}"
        )
