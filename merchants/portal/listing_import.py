"""Bulk import of listings from a CSV file: a dry run that reports every bad row, then the import.

The columns are the editor's field names (``title, scenario, max_amount, rule_kind, unit, unit_price …``,
``tiers`` as ``10:1.00;50:0.80;:0.60``), so a row is read by the same code as the form
(:func:`merchants.portal.listing_forms.rule_json`) and checked by the same service function as a
listing typed by hand (:func:`merchants.services.listing_fields_clean`). The dry run writes nothing; the
import checks every row again and creates all of them in one transaction, or none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _

from bnpl.exceptions import ValidationFailed

from ..activity import activity_record
from ..models import Listing, Merchant, MerchantMember
from ..pricing import PricingRuleError, describe, parse_rule
from ..services import listing_create, listing_fields_clean
from .listing_forms import ALL_RULE_FIELDS, rule_errors_to_fields, rule_json, tiers_from_text

#: Rows per file; larger catalogues are split into several files.
MAX_ROWS = 1000
MAX_BYTES = 1024 * 1024
LISTING_COLUMNS = ["title", "description", "scenario", "confirm_mode", "max_amount", "min_score", "order_ttl_minutes"]
COLUMNS = [*LISTING_COLUMNS, "rule_kind", *ALL_RULE_FIELDS, "tiers"]
REQUIRED_COLUMNS = ("title", "scenario", "max_amount", "rule_kind")
DEFAULTS = {"confirm_mode": "each_time", "min_score": "550", "order_ttl_minutes": "30", "description": ""}
SAMPLE_ROWS = [
    {"title": "电动车充电 1号桩", "scenario": "ebike_charging", "max_amount": "20.00", "rule_kind": "per_unit",
     "unit": "hour", "unit_price": "1.00", "cap_per_24h": "10.00", "round_up": "yes"},
    {"title": "游泳馆单次", "scenario": "swimming_fitness", "max_amount": "100.00", "rule_kind": "fixed",
     "price": "45.00"},
    {"title": "快充站", "scenario": "ebike_charging", "max_amount": "50.00", "rule_kind": "tiered", "unit": "kwh",
     "tiers": "10:1.20;:0.90"},
    {"title": "同城快递", "scenario": "express_delivery", "max_amount": "200.00", "rule_kind": "express",
     "first_weight_kg": "1", "first_weight_fee": "12.00", "additional_per_kg": "2.00", "packaging_fee": "3.00"},
]  # fmt: skip


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, header, size); the message says what to fix."""


@dataclass
class ImportRow:
    """One data row of the file as checked: its line number, what it would create, or what is wrong."""

    line: int
    values: dict[str, str]
    fields: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rule_text(self) -> str:
        try:
            return describe(parse_rule(self.fields["pricing_rule"]), translation.get_language() or "zh-hans")
        except (KeyError, PricingRuleError):  # a bad row has no rule to describe
            return ""


def sample_csv() -> bytes:
    """A template file with every column and one row per rule kind (UTF-8 with a BOM for Excel)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(SAMPLE_ROWS)
    return buffer.getvalue().encode("utf-8-sig")


def decode_csv(content: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM), else GB18030; ``ImportFileError`` for anything else."""
    # Excel on Chinese Windows saves CSV in GB18030 unless told otherwise; UTF-8 (with or without BOM) first.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError(_("The file is neither UTF-8 nor GB18030 text. Save it as “CSV UTF-8”."))


def read_rows(content: bytes) -> list[dict[str, str]]:
    """The file's data rows as column → text; refuses an unreadable file, unknown columns or too many rows."""
    if len(content) > MAX_BYTES:
        raise ImportFileError(_("The file is larger than 1 MB. Split it into several files."))
    reader = csv.DictReader(io.StringIO(decode_csv(content)))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise ImportFileError(_("The file is empty."))
    reader.fieldnames = header
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ImportFileError(_("Columns missing: %(columns)s.") % {"columns": ", ".join(missing)})
    unknown = [name for name in header if name and name not in COLUMNS]
    if unknown:
        raise ImportFileError(_("Unknown columns: %(columns)s.") % {"columns": ", ".join(unknown)})
    rows = []
    for row in reader:
        values = {key: (value or "").strip() for key, value in row.items() if key}
        if any(values.values()):
            rows.append(values)
        if len(rows) > MAX_ROWS:
            raise ImportFileError(
                _("The file has more than %(max)d rows. Split it into several files.") % {"max": MAX_ROWS}
            )
    if not rows:
        raise ImportFileError(_("The file has no data rows."))
    return rows


def _row_fields(values: dict[str, str]) -> dict[str, Any]:
    listing = {name: values.get(name) or DEFAULTS.get(name, "") for name in LISTING_COLUMNS}
    listing["pricing_rule"] = rule_json(values.get("rule_kind", ""), values, tiers_from_text(values.get("tiers", "")))
    return listing


def check_rows(*, merchant: Merchant, rows: list[dict[str, str]]) -> list[ImportRow]:
    """Check every row as the listing service would (writes nothing); line numbers count the header as 1."""
    checked = []
    # Importing the same file twice would list everything twice: say so, but let the merchant decide.
    existing = set(Listing.objects.filter(merchant=merchant).values_list("title", flat=True))
    seen: dict[str, int] = {}
    for number, values in enumerate(rows, start=2):
        row = ImportRow(line=number, values=values)
        title = values.get("title", "")
        if title in existing:
            row.warnings.append(_("You already have a listing with this title; this adds another one."))
        if title and title in seen:
            row.warnings.append(_("Same title as line %(line)d.") % {"line": seen[title]})
        seen.setdefault(title, number)
        fields = _row_fields(values)
        try:
            row.fields = {**fields, **listing_fields_clean(merchant=merchant, data=fields)}
        except ValidationFailed as exc:
            row.errors = rule_errors_to_fields(exc.fields or {"__all__": exc.message})
        checked.append(row)
    return checked


def listings_import(
    *,
    actor: Any,
    member: MerchantMember | None,
    merchant: Merchant,
    content: bytes,
    progress: Callable[[int, int], None] | None = None,
) -> list[Listing]:
    """Create every listing of the file in one transaction, or none when any row is wrong.

    Raises ``ValidationFailed`` (with the number of bad rows) or :class:`ImportFileError`; ``progress``
    is told ``(done, total)`` as rows are created, for a background runner's progress bar.
    """
    rows = read_rows(content)
    with transaction.atomic():
        checked = check_rows(merchant=merchant, rows=rows)
        bad = [row for row in checked if not row.ok]
        if bad:
            raise ValidationFailed(
                _("%(count)d rows have errors; nothing was imported. Run the check again to see them.")
                % {"count": len(bad)},
                code="import_rows_invalid",
            )
        created = []
        for done, row in enumerate(checked, start=1):
            created.append(listing_create(actor=actor, merchant=merchant, **_row_fields(row.values)))
            if progress is not None:
                progress(done, len(checked))
        activity_record(
            merchant=merchant,
            member=member,
            action="listing.import",
            target=_("%(count)d listings") % {"count": len(created)},
            detail={"count": len(created), "ids": [listing.pk for listing in created][:50]},
        )
    return created
