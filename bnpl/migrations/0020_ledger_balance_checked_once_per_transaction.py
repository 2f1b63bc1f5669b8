"""The ledger's balance is checked once per ledger transaction at COMMIT, instead of once more per entry.

Migration 0003 checked every posting's balance from two deferred constraint triggers: one per ledger transaction
(which also catches a transaction given no entries) and one per entry. At COMMIT both fire, so a posting of two
entries was summed three times, each a query and a trigger event: 35–95 µs per posting measured on the
development machine (2,000 postings of two entries, 0.60–0.74 s with the per-entry check and 0.53–0.54 s without),
and a charged order posts two (docs/ledger.md).

The per-transaction check alone sees every entry when it runs at COMMIT. What the per-entry trigger still caught
is an entry added after its transaction's check had already run in the same database transaction, which only
``SET CONSTRAINTS … IMMEDIATE`` makes possible (the checks then run at once, and the posting could go on). Now the
check records the highest ledger transaction id it has checked in a transaction-local setting
(``bnpl.ledger_checked_upto``), and the entries' ``BEFORE INSERT`` trigger, which already refuses entries for a
transaction posted earlier, refuses entries for a transaction at or below that id. Transactions posted after the
check have higher ids (an identity column) and take entries as before.
"""

from django.db import migrations

FORWARD = r"""
DROP TRIGGER bnpl_ledgerentry_balanced ON bnpl_ledgerentry;
DROP FUNCTION bnpl_ledger_entry_balanced();

CREATE OR REPLACE FUNCTION bnpl_ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_ledger_assert_balanced(NEW.id);
    -- Transaction-local: entries for this transaction (or an earlier one) are refused from now on.
    PERFORM set_config(
        'bnpl.ledger_checked_upto',
        GREATEST(COALESCE(NULLIF(current_setting('bnpl.ledger_checked_upto', true), '')::bigint, 0), NEW.id)::text,
        true
    );
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION bnpl_ledger_stamp_entry() RETURNS trigger LANGUAGE plpgsql AS $$
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
    -- Its balance was checked already (SET CONSTRAINTS … IMMEDIATE): an entry now would escape the check.
    IF NEW.transaction_id <= NULLIF(current_setting('bnpl.ledger_checked_upto', true), '')::bigint THEN
        RAISE EXCEPTION 'ledger transaction % has been checked for balance; entries cannot be added to it',
            NEW.transaction_id
            USING ERRCODE = 'restrict_violation';
    END IF;
    NEW.created_at := now();
    RETURN NEW;
END;
$$;
"""

REVERSE = r"""
CREATE OR REPLACE FUNCTION bnpl_ledger_stamp_entry() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION bnpl_ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_ledger_assert_balanced(NEW.id);
    RETURN NULL;
END;
$$;

CREATE FUNCTION bnpl_ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bnpl_ledger_assert_balanced(NEW.transaction_id);
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER bnpl_ledgerentry_balanced
    AFTER INSERT ON bnpl_ledgerentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bnpl_ledger_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0019_sandbox_charge_insert_first"),
    ]

    operations = [
        migrations.RunSQL(sql=FORWARD, reverse_sql=REVERSE),
    ]
