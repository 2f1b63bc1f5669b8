"""``manage.py setup_schedules``: write the jobs declared in ``bnpl/schedules.py`` to django-q2's Schedule table.

Run it on every deploy before the cluster starts (``make run`` does). Output is for operators and stays English,
like Django's own ``migrate``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from bnpl.schedules import schedules_sync


class Command(BaseCommand):
    help = (
        "Create, correct and delete django-q2 schedules so that they match the jobs declared in bnpl/schedules.py. "
        "All or nothing; running it twice changes nothing the second time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would change without writing anything.",
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        report = schedules_sync(actor=None, dry_run=dry_run)
        would = "would be " if dry_run else ""
        for name in report.created:
            self.stdout.write(self.style.SUCCESS(f"{would}created: {name}"))
        for name, columns in report.updated.items():
            self.stdout.write(self.style.WARNING(f"{would}updated: {name} ({', '.join(columns)})"))
        for name in report.deleted:
            self.stdout.write(self.style.ERROR(f"{would}deleted: {name}"))
        for name in report.kept:
            self.stdout.write(f"kept: {name}")
        if not report.changed:
            self.stdout.write("Schedules are up to date; nothing changed.")
        elif dry_run:
            self.stdout.write(self.style.NOTICE("Dry run: nothing was written."))
