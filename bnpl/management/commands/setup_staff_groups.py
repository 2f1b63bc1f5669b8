"""``manage.py setup_staff_groups``: write the staff groups declared in ``bnpl/staff_groups.py`` to ``auth.Group``.

Run it on every deploy after ``migrate`` (``make run`` does). Output is for operators and stays English, like
Django's own ``migrate``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bnpl.staff_groups import UnknownPermission, staff_groups_sync


class Command(BaseCommand):
    help = (
        "Create the staff groups (reviewer, risk, finance, support) and set each one's permissions to exactly "
        "those declared in bnpl/staff_groups.py. All or nothing; running it twice changes nothing the second time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Print what would change without writing anything.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        try:
            report = staff_groups_sync(dry_run=dry_run)
        except UnknownPermission as exc:
            raise CommandError(str(exc)) from exc
        would = "would be " if dry_run else ""
        for name in report.created:
            self.stdout.write(self.style.SUCCESS(f"{would}created: {name}"))
        for name, permissions in report.added.items():
            self.stdout.write(self.style.SUCCESS(f"{name}: {would}granted {', '.join(permissions)}"))
        for name, permissions in report.removed.items():
            self.stdout.write(self.style.WARNING(f"{name}: {would}revoked {', '.join(permissions)}"))
        for name in report.kept:
            self.stdout.write(f"kept: {name}")
        if not report.changed:
            self.stdout.write("Staff groups are up to date; nothing changed.")
        elif dry_run:
            self.stdout.write(self.style.NOTICE("Dry run: nothing was written."))
