"""``manage.py refresh_scores``: re-score every consumer with the active scorecard.

Promise records re-score a consumer as they are written; this catches what moves with
time alone (tenure, days since the last breach or order) and moves everyone to a newly
activated card. Each consumer is its own small transaction (a score change is a
``credit_score_set`` with its event row), so a long run holds no long locks and can be
stopped and run again.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from consumers.models import Consumer
from scoring.services import score_refresh


class Command(BaseCommand):
    help = "Re-score every consumer with the active scorecard (writes only scores that moved)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        changed = seen = 0
        last_id = 0
        while True:
            ids = list(
                Consumer.objects.filter(pk__gt=last_id, credit_profile__isnull=False)
                .order_by("pk")
                .values_list("pk", flat=True)[: options["chunk"]]
            )
            if not ids:
                break
            for consumer_id in ids:
                with transaction.atomic():
                    if score_refresh(actor=None, consumer=Consumer(pk=consumer_id), reason="periodic refresh"):
                        changed += 1
                seen += 1
            last_id = ids[-1]
        self.stdout.write(f"Re-scored {seen} consumers; {changed} scores changed.")
