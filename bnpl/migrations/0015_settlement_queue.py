"""The settlement queue: merchant-payable entries no batch has taken yet (docs/settlement.md).

Settlement used to find a merchant's unsettled entries by reading every entry of its payable
account and removing the settled ones (``NOT EXISTS`` on ``bnpl_settlementitem``): a cost that grew
with the merchant's history, every business day (docs/performance.md). ``bnpl_unsettledentry``
holds only the entries still waiting:

1. A row is written by the database, in the posting's own transaction, for each entry on a
   merchant-payable account of a completion, fee, refund or adjustment posting (the kinds
   settlement takes): an AFTER INSERT row trigger on ``bnpl_ledgerentry``, like the ledger's own
   stamp trigger (migration 0003), so every writer — ``ledger_post``, the charge run's bulk
   INSERT, raw SQL — queues its entries, and a rolled-back posting leaves no row. Not deferred:
   the row exists from the moment the entry does.
2. The settlement job deletes the rows of the entries it puts in a batch, in the batch's transaction.
3. The existing entries not yet settled are queued here, after the trigger is created: CREATE
   TRIGGER waits for the transactions already writing entries and then blocks new ones until this
   migration commits, so no entry falls between the backfill and the trigger.

The queue is not part of the ledger: its rows are deleted, while the ledger stays append-only.
"""

import django.db.models.deletion
from django.db import migrations, models

# The backfill as it stood when this migration was written: a migration keeps its own copy, so a later change
# to the model module's statement (bnpl.models.settlement.UNSETTLED_ENTRY_BACKFILL) cannot change what this
# migration did on a database that already ran it, or break it on one that has not yet.
UNSETTLED_ENTRY_BACKFILL = """
INSERT INTO bnpl_unsettledentry (entry_id, account_id, created_at)
SELECT e.id, e.account_id, e.created_at
FROM bnpl_ledgerentry e
JOIN bnpl_ledgeraccount a ON a.id = e.account_id
JOIN bnpl_ledgertransaction t ON t.id = e.transaction_id
WHERE a.kind = 'merchant_payable'
  AND t.kind IN ('completion', 'fee', 'refund', 'adjustment')
  AND NOT EXISTS (SELECT 1 FROM bnpl_settlementitem s WHERE s.ledger_entry_id = e.id)
ON CONFLICT (entry_id) DO NOTHING
"""

FORWARD = r"""
CREATE FUNCTION bnpl_settlement_queue_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Both lookups are by primary key; the transaction is read only for a merchant-payable entry.
    INSERT INTO bnpl_unsettledentry (entry_id, account_id, created_at)
    SELECT NEW.id, NEW.account_id, NEW.created_at
    FROM bnpl_ledgeraccount a
    WHERE a.id = NEW.account_id AND a.kind = 'merchant_payable'
      AND EXISTS (SELECT 1 FROM bnpl_ledgertransaction t
                  WHERE t.id = NEW.transaction_id AND t.kind IN ('completion', 'fee', 'refund', 'adjustment'));
    RETURN NULL;
END;
$$;

CREATE TRIGGER bnpl_ledgerentry_settlement_queue
    AFTER INSERT ON bnpl_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION bnpl_settlement_queue_entry();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS bnpl_ledgerentry_settlement_queue ON bnpl_ledgerentry;
DROP FUNCTION IF EXISTS bnpl_settlement_queue_entry();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0014_order_overdue_id_idx"),
    ]

    operations = [
        migrations.CreateModel(
            name="UnsettledEntry",
            fields=[
                (
                    "entry",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="bnpl.ledgerentry",
                    ),
                ),
                ("created_at", models.DateTimeField(verbose_name="Posted at")),
                (
                    "account",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="bnpl.ledgeraccount",
                    ),
                ),
            ],
            options={
                "verbose_name": "Unsettled entry",
                "verbose_name_plural": "Unsettled entries",
                "ordering": ["account_id", "created_at", "entry_id"],
                "indexes": [models.Index(fields=["account", "created_at"], name="unsettled_entry_account_idx")],
            },
        ),
        migrations.RunSQL(sql=FORWARD, reverse_sql=REVERSE),
        migrations.RunSQL(sql=UNSETTLED_ENTRY_BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
