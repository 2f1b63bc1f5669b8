"""The order export: a ``MerchantTask`` runner writing the filtered order list as CSV (UTF-8 with a BOM, so
Excel on a Chinese Windows opens it without mojibake). Started by ``merchant:order_export``.

Phones are masked (138****1234) as on the screen; times are Beijing time; amounts have two places.
"""

from __future__ import annotations

import csv
import io

from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import override

from bnpl.choices import OrderStatus
from bnpl.spreadsheets import safe_text_cell
from bnpl.validators import mask_phone
from merchants.choices import Scenario
from merchants.models import Listing, MerchantTask
from merchants.task_runner import Progress, TaskOutcome

from .forms import OrderFilterForm
from .selectors import filtered_orders

CHUNK = 2000


def export_orders_runner(task: MerchantTask, progress: Progress) -> TaskOutcome:
    merchant = task.merchant
    listings = list(Listing.objects.filter(merchant=merchant).values_list("pk", "title"))
    form = OrderFilterForm(QueryDict(task.params.get("query", "")), merchant=merchant, listings=listings)
    filters = form.filters()
    qs = filtered_orders(merchant=merchant, filters=filters)
    total = qs.count()
    progress(0, total)
    statuses, scenarios = dict(OrderStatus.choices), dict(Scenario.choices)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    with override(task.params.get("language") or None):
        writer.writerow(
            [
                _("Order ID"),
                _("Merchant order no."),
                _("Created at"),
                _("Listing"),
                _("Scenario"),
                _("Consumer phone"),
                _("Status"),
                _("Maximum amount"),
                _("Amount due"),
                _("Refunded"),
                _("Delinquency bucket"),
                _("Guaranteed at"),
                _("Paid at"),
            ]
        )
        rows = (
            qs.order_by("-created_at", "-id")
            .values_list(
                "pk",
                "out_order_no",
                "created_at",
                "listing__title",
                "scenario",
                "consumer__phone",
                "status",
                "max_amount",
                "amount_due",
                "refunded_amount",
                "dpd_bucket",
                "guaranteed_at",
                "paid_at",
            )
            .iterator(chunk_size=CHUNK)
        )

        def when(value: object) -> str:
            return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""  # type: ignore[arg-type]

        done = 0
        for pk, out_no, created, title, scenario, phone, status, cap, due, refunded, bucket, guaranteed, paid in rows:
            writer.writerow(
                [
                    pk,
                    safe_text_cell(out_no),
                    when(created),
                    safe_text_cell(title),
                    safe_text_cell(scenarios.get(scenario, scenario)),
                    mask_phone(phone) if phone else "",
                    safe_text_cell(statuses.get(status, status)),
                    f"{cap:.2f}",
                    f"{due:.2f}" if due is not None else "",
                    f"{refunded:.2f}",
                    safe_text_cell(bucket),
                    when(guaranteed),
                    when(paid),
                ]
            )
            done += 1
            if done % 500 == 0:
                progress(min(done, total), max(total, done))
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    return TaskOutcome(
        summary={"rows": done},
        file_name=f"orders-{stamp}.csv",
        content=buffer.getvalue().encode("utf-8-sig"),
    )
