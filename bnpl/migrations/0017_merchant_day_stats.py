"""The merchant dashboard's daily roll-up and its append-only deltas (bnpl/models/order_stats.py, docs/architecture.md).

1. ``bnpl_merchantdaystats``: one row per (merchant, Beijing day of order creation) with the dashboard's figures;
   ``bnpl_merchantdaydelta``: changes to it not folded in yet.
2. Statement-level AFTER triggers on ``bnpl_creditorder`` (INSERT, UPDATE, DELETE) and ``bnpl_dispute`` read the
   statement's transition tables and INSERT one delta per (merchant, day) the statement changed: the new rows'
   contributions minus the old rows'. A statement that changes no figure (the charge run's claim of a first
   attempt, ``updated_at``) inserts nothing; orders created before the horizon (45 days) are ignored. INSERT only:
   no writer updates a shared row, so concurrent writers of one merchant's orders never wait on each other here.
   (Transition tables cannot be combined with a column list or with several events in one trigger, hence three
   triggers per table on one function, which fire for every statement.)
3. ``bnpl_merchant_day_stats_rebuild()`` recomputes the roll-up from the orders and disputes: the backfill below,
   the repair tool (``bnpl.merchant_portal.day_stats.day_stats_rebuild``) and what a TRUNCATE of either table runs.
   It blocks writers of both tables (SHARE lock) while it scans the horizon's orders.

The SQL is written out here, not imported: a migration keeps what it did. The figure definitions must equal
``bnpl.merchant_portal.selectors.merchant_day_figures_scan`` (the straightforward computation the tests compare to).
"""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models

TZ = "'Asia/Shanghai'"
HORIZON_DAYS = 45
LOCK_KEY = 0x626E706C_4453  # "bnpl" "DS": pg_advisory_xact_lock of the fold and the rebuild (day_stats.py)
BILLED = "r.status IN ('completed', 'collecting', 'overdue', 'paid', 'partially_refunded', 'refunded', 'written_off')"
CHARGED = "r.status IN ('paid', 'partially_refunded', 'refunded')"

# (column, condition on the order row r, amount or None for a count); disputes come from bnpl_dispute.
FIGURES = [
    ("orders", "true", None),
    ("approved", "r.status NOT IN ('created', 'declined')", None),
    ("declined", "r.status = 'declined'", None),
    ("billed", BILLED, None),
    ("charge_tried", "r.charge_attempt_count > 0 AND NOT r.charge_in_flight", None),
    (
        "charged",
        f"r.charged_at IS NOT NULL AND {CHARGED} AND r.charge_attempt_count > 0 AND NOT r.charge_in_flight",
        None,
    ),
    ("overdue", "r.status = 'overdue'", None),
    ("guaranteed", "r.guaranteed_at IS NOT NULL", None),
    ("refunded", "r.refunded_amount > 0", None),
    ("dpd_m0", "r.status = 'overdue' AND r.dpd_bucket = 'M0'", None),
    ("dpd_m1", "r.status = 'overdue' AND r.dpd_bucket = 'M1'", None),
    ("dpd_m2", "r.status = 'overdue' AND r.dpd_bucket = 'M2'", None),
    ("dpd_m3", "r.status = 'overdue' AND r.dpd_bucket = 'M3+'", None),
    ("disputes", None, None),
    ("gmv", BILLED, "r.amount_due"),
    ("guaranteed_amount", "r.guaranteed_at IS NOT NULL", "r.amount_due"),
    ("refunded_amount", "r.refunded_amount > 0", "r.refunded_amount"),
]
COLUMNS = ", ".join(name for name, _c, _a in FIGURES)
SUMS = ", ".join(f"sum({name})" for name, _c, _a in FIGURES)
ANY_CHANGE = " OR ".join(f"sum({name}) <> 0" for name, _c, _a in FIGURES)


def _day(column: str) -> str:
    return f"({column} AT TIME ZONE {TZ})::date"


def _order_contributions(source: str) -> str:
    """A row per order row of ``source`` (with a ``sign`` column): merchant, day, each figure times the sign."""
    exprs = []
    for name, condition, amount in FIGURES:
        if condition is None:
            exprs.append(f"0 AS {name}")
        elif amount is None:
            exprs.append(f"CASE WHEN {condition} THEN r.sign ELSE 0 END AS {name}")
        else:
            exprs.append(f"CASE WHEN {condition} THEN r.sign * coalesce({amount}, 0) ELSE 0 END AS {name}")
    return f"SELECT r.merchant_id, {_day('r.created_at')} AS day, {', '.join(exprs)} FROM ({source}) r"


def _dispute_contributions(source: str) -> str:
    """A row per dispute of ``source`` (columns merchant_id, created_at of its order, sign): +sign disputes."""
    exprs = ", ".join("m.sign AS disputes" if name == "disputes" else f"0 AS {name}" for name, _c, _a in FIGURES)
    return f"SELECT m.merchant_id, {_day('m.created_at')} AS day, {exprs} FROM ({source}) m"


def _insert_deltas(*parts: str) -> str:
    union = "\n        UNION ALL\n        ".join(parts)
    return f"""
        INSERT INTO bnpl_merchantdaydelta (merchant_id, day, {COLUMNS})
        SELECT merchant_id, day, {SUMS}
        FROM (
        {union}
        ) c
        WHERE day >= horizon
        GROUP BY merchant_id, day
        HAVING {ANY_CHANGE};"""


NEW = "SELECT 1 AS sign, n.* FROM new_rows n"
OLD = "SELECT -1 AS sign, o.* FROM old_rows o"
# An order whose creation time changes takes its disputes to its new day (the application never changes
# created_at; tests and repairs may). Disputes are grouped by their own merchant, as the dashboard always did.
MOVED_DISPUTES = """
    SELECT d.merchant_id, x.created_at, x.sign FROM (
        SELECT n.id, n.created_at, 1 AS sign FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.created_at <> n.created_at
        UNION ALL
        SELECT o.id, o.created_at, -1 FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.created_at <> n.created_at
    ) x JOIN bnpl_dispute d ON d.order_id = x.id"""
DISPUTES_OF = (
    "SELECT d.merchant_id, o.created_at, d.sign FROM ({source}) d JOIN bnpl_creditorder o ON o.id = d.order_id"
)

HORIZON = f"horizon date := ({_day('now()')}) - {HORIZON_DAYS};"

FORWARD = f"""
CREATE FUNCTION bnpl_order_day_stats_delta() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    {HORIZON}
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_insert_deltas(_order_contributions(NEW))}
    ELSIF TG_OP = 'DELETE' THEN
        {_insert_deltas(_order_contributions(OLD))}
    ELSE
        {_insert_deltas(_order_contributions(f"{NEW} UNION ALL {OLD}"), _dispute_contributions(MOVED_DISPUTES))}
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER bnpl_creditorder_day_stats_insert AFTER INSERT ON bnpl_creditorder
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bnpl_order_day_stats_delta();
CREATE TRIGGER bnpl_creditorder_day_stats_update AFTER UPDATE ON bnpl_creditorder
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bnpl_order_day_stats_delta();
CREATE TRIGGER bnpl_creditorder_day_stats_delete AFTER DELETE ON bnpl_creditorder
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION bnpl_order_day_stats_delta();

CREATE FUNCTION bnpl_dispute_day_stats_delta() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    {HORIZON}
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_insert_deltas(_dispute_contributions(DISPUTES_OF.format(source=NEW)))}
    ELSIF TG_OP = 'DELETE' THEN
        {_insert_deltas(_dispute_contributions(DISPUTES_OF.format(source=OLD)))}
    ELSE
        {_insert_deltas(_dispute_contributions(DISPUTES_OF.format(source=f"{NEW} UNION ALL {OLD}")))}
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER bnpl_dispute_day_stats_insert AFTER INSERT ON bnpl_dispute
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bnpl_dispute_day_stats_delta();
CREATE TRIGGER bnpl_dispute_day_stats_update AFTER UPDATE ON bnpl_dispute
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION bnpl_dispute_day_stats_delta();
CREATE TRIGGER bnpl_dispute_day_stats_delete AFTER DELETE ON bnpl_dispute
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION bnpl_dispute_day_stats_delta();

CREATE FUNCTION bnpl_merchant_day_stats_rebuild() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    {HORIZON}
    since timestamptz := horizon::timestamp AT TIME ZONE {TZ};
    written bigint;
BEGIN
    -- Writers of orders and disputes wait until this transaction ends, and no fold runs meanwhile: the
    -- scan below and the deleted deltas describe the same committed state.
    LOCK TABLE bnpl_creditorder, bnpl_dispute IN SHARE MODE;
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    DELETE FROM bnpl_merchantdaydelta;
    DELETE FROM bnpl_merchantdaystats;
    INSERT INTO bnpl_merchantdaystats (merchant_id, day, {COLUMNS})
    SELECT merchant_id, day, {SUMS}
    FROM (
        {_order_contributions("SELECT 1 AS sign, o.* FROM bnpl_creditorder o WHERE o.created_at >= since")}
        UNION ALL
        {_dispute_contributions(
            "SELECT d.merchant_id, o.created_at, 1 AS sign FROM bnpl_dispute d "
            "JOIN bnpl_creditorder o ON o.id = d.order_id WHERE o.created_at >= since"
        )}
    ) c
    GROUP BY merchant_id, day;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END;
$$;

CREATE FUNCTION bnpl_day_stats_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_merchant_day_stats_rebuild();
    RETURN NULL;
END;
$$;

CREATE TRIGGER bnpl_creditorder_day_stats_truncate AFTER TRUNCATE ON bnpl_creditorder
    FOR EACH STATEMENT EXECUTE FUNCTION bnpl_day_stats_after_truncate();
CREATE TRIGGER bnpl_dispute_day_stats_truncate AFTER TRUNCATE ON bnpl_dispute
    FOR EACH STATEMENT EXECUTE FUNCTION bnpl_day_stats_after_truncate();

SELECT bnpl_merchant_day_stats_rebuild();
"""

REVERSE = """
DROP TRIGGER IF EXISTS bnpl_creditorder_day_stats_truncate ON bnpl_creditorder;
DROP TRIGGER IF EXISTS bnpl_dispute_day_stats_truncate ON bnpl_dispute;
DROP TRIGGER IF EXISTS bnpl_creditorder_day_stats_insert ON bnpl_creditorder;
DROP TRIGGER IF EXISTS bnpl_creditorder_day_stats_update ON bnpl_creditorder;
DROP TRIGGER IF EXISTS bnpl_creditorder_day_stats_delete ON bnpl_creditorder;
DROP TRIGGER IF EXISTS bnpl_dispute_day_stats_insert ON bnpl_dispute;
DROP TRIGGER IF EXISTS bnpl_dispute_day_stats_update ON bnpl_dispute;
DROP TRIGGER IF EXISTS bnpl_dispute_day_stats_delete ON bnpl_dispute;
DROP FUNCTION IF EXISTS bnpl_day_stats_after_truncate();
DROP FUNCTION IF EXISTS bnpl_merchant_day_stats_rebuild();
DROP FUNCTION IF EXISTS bnpl_dispute_day_stats_delta();
DROP FUNCTION IF EXISTS bnpl_order_day_stats_delta();
"""


def _figure_fields():
    fields = []
    for name, _condition, amount in FIGURES:
        if amount is None:
            fields.append((name, models.IntegerField(default=0)))
    for name, _condition, amount in FIGURES:
        if amount is not None:
            fields.append((name, models.DecimalField(decimal_places=2, default=0, max_digits=14)))
    return fields


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0016_order_charged_at"),
        ("merchants", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="MerchantDayStats",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                *_figure_fields(),
                ("day", models.DateField(verbose_name="Day")),
                (
                    "merchant",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="merchants.merchant",
                    ),
                ),
            ],
            options={
                "verbose_name": "Merchant day figures",
                "verbose_name_plural": "Merchant day figures",
                "indexes": [models.Index(fields=["day"], name="merchant_day_stats_day_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("merchant", "day"), name="merchant_day_stats_unique")
                ],
            },
        ),
        migrations.CreateModel(
            name="MerchantDayDelta",
            fields=[
                *_figure_fields(),
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("day", models.DateField(verbose_name="Day")),
                ("created_at", models.DateTimeField(db_default=django.db.models.functions.datetime.Now())),
                (
                    "merchant",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="merchants.merchant",
                    ),
                ),
            ],
            options={
                "verbose_name": "Merchant day figures change",
                "verbose_name_plural": "Merchant day figures changes",
                "indexes": [models.Index(fields=["merchant", "day"], name="merchant_day_delta_idx")],
            },
        ),
        migrations.RunSQL(FORWARD, REVERSE),
    ]
