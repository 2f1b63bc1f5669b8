"""``manage.py reminder_report [--days 90]``: do reminders work? Prints on-time rates, reminded vs control."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from bnpl.notifications.report import reminder_report


class Command(BaseCommand):
    help = "On-time rates of orders that received pre-charge reminders vs the control group, and by level."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=90, help="orders due in the last N days (default 90)")

    def handle(self, *args: object, **options: object) -> None:
        now = timezone.now()
        report = reminder_report(since=now - timedelta(days=int(options["days"])), until=now)
        for line in report.lines():
            self.stdout.write(line)
