"""Database-enforced ledger invariants (docs/ledger.md, architecture invariant 2).

Written by hand: Django cannot express triggers. They make the ledger's rules hold
against every client, including ``queryset.update()``, ``.delete()`` and raw SQL:

1. Append-only: UPDATE and DELETE of ledger transactions and entries raise.
2. Posting time comes from the database: ``created_at`` of a transaction and of an
   entry is set to ``now()`` (the start of the database transaction) on insert.
3. An entry may only join a ledger transaction posted in the same database
   transaction, so a committed posting can never gain entries later.
4. Balanced: at COMMIT (deferred constraint triggers) every ledger transaction that
   was written has at least two entries and its entries sum to zero.

TRUNCATE is deliberately not refused: the test runner empties tables with TRUNCATE
between transactional tests, and TRUNCATE needs table-owner rights anyway.
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION bnpl_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Correct a posting with a new, reversing ledger transaction.';
END;
$$;

CREATE TRIGGER bnpl_ledgertransaction_append_only
    BEFORE UPDATE OR DELETE ON bnpl_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_refuse_change();

CREATE TRIGGER bnpl_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON bnpl_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_refuse_change();

CREATE FUNCTION bnpl_ledger_stamp_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER bnpl_ledgertransaction_stamp
    BEFORE INSERT ON bnpl_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_stamp_transaction();

CREATE FUNCTION bnpl_ledger_stamp_entry() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    posted_at timestamptz;
BEGIN
    SELECT created_at INTO posted_at FROM bnpl_ledgertransaction WHERE id = NEW.transaction_id;
    -- now() is the start of the current database transaction: equal only when the
    -- ledger transaction was inserted by this same database transaction.
    IF posted_at IS DISTINCT FROM now() THEN
        RAISE EXCEPTION 'ledger transaction % is already posted; entries cannot be added to it',
            NEW.transaction_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    NEW.created_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER bnpl_ledgerentry_stamp
    BEFORE INSERT ON bnpl_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_stamp_entry();

CREATE FUNCTION bnpl_ledger_assert_balanced(txn_id bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    n integer;
BEGIN
    SELECT COALESCE(SUM(amount), 0), COUNT(*) INTO total, n FROM bnpl_ledgerentry WHERE transaction_id = txn_id;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; at least two are required', txn_id, n
            USING ERRCODE = 'check_violation';
    END IF;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: its entries sum to %', txn_id, total
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

CREATE FUNCTION bnpl_ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END;
$$;

CREATE FUNCTION bnpl_ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_ledger_assert_balanced(NEW.id);
    RETURN NULL;
END;
$$;

-- Deferred to COMMIT: the entries of a posting are inserted one statement after the
-- other, so the sum is only meaningful once they are all in.
CREATE CONSTRAINT TRIGGER bnpl_ledgerentry_balanced
    AFTER INSERT ON bnpl_ledgerentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_entry_balanced();

-- Catches a ledger transaction that was given no entries at all.
CREATE CONSTRAINT TRIGGER bnpl_ledgertransaction_balanced
    AFTER INSERT ON bnpl_ledgertransaction
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_transaction_balanced();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS bnpl_ledgertransaction_balanced ON bnpl_ledgertransaction;
DROP TRIGGER IF EXISTS bnpl_ledgerentry_balanced ON bnpl_ledgerentry;
DROP FUNCTION IF EXISTS bnpl_ledger_transaction_balanced();
DROP FUNCTION IF EXISTS bnpl_ledger_entry_balanced();
DROP FUNCTION IF EXISTS bnpl_ledger_assert_balanced(bigint);
DROP TRIGGER IF EXISTS bnpl_ledgerentry_stamp ON bnpl_ledgerentry;
DROP FUNCTION IF EXISTS bnpl_ledger_stamp_entry();
DROP TRIGGER IF EXISTS bnpl_ledgertransaction_stamp ON bnpl_ledgertransaction;
DROP FUNCTION IF EXISTS bnpl_ledger_stamp_transaction();
DROP TRIGGER IF EXISTS bnpl_ledgerentry_append_only ON bnpl_ledgerentry;
DROP TRIGGER IF EXISTS bnpl_ledgertransaction_append_only ON bnpl_ledgertransaction;
DROP FUNCTION IF EXISTS bnpl_ledger_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0002_ledger_and_sandbox"),
    ]

    operations = [
        migrations.RunSQL(sql=FORWARD, reverse_sql=REVERSE),
    ]
