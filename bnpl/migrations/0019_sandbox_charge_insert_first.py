"""The sandbox provider's charge asks the unique key whether a request is new, instead of looking the key up first.

Migration 0009's function read ``bnpl_sandboxcharge`` by key before inserting. PL/pgSQL caches that statement's plan
per connection, and a plan made while the table was nearly empty is a sequential scan, kept for as long as the
connection lives (until the table is next analysed): a charge run on a new database read every charge recorded so far
for each new one (128 µs of the 625 µs of database time per charged order in a 4,000-order run, and growing with
the run; docs/performance.md). Now the function inserts first, ``ON CONFLICT (idempotency_key) DO NOTHING``: the
unique index alone decides, with no plan to go wrong, and a new charge costs one statement less. Only a duplicate
reads the recorded charge, to replay it.

The rows, locks and outcomes are the same. The funding source is locked first, so duplicates naming one source queue
there; a duplicate naming another source waits on the key's index entry until the first commits, then replays it
(before, it failed on the unique key and the Python side replayed it). The balance moves only when the insert
recorded a success, under the same lock.
"""

import importlib

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION bnpl_sandbox_charge(
    p_key text, p_token text, p_amount numeric, p_risk_reject boolean, p_reference text
) RETURNS TABLE (
    charge_id bigint, reference varchar, status varchar, decline_code varchar, funding_token varchar,
    amount numeric, replayed boolean
) LANGUAGE plpgsql AS $$
DECLARE
    source_id bigint;
    source_frozen boolean;
    source_balance numeric;
    decline text := '';
BEGIN
    SELECT s.id, s.frozen, s.balance_amount INTO source_id, source_frozen, source_balance
    FROM bnpl_sandboxfundingsource s WHERE s.token = p_token FOR UPDATE;

    IF source_id IS NULL THEN
        decline := 'account_closed';
    ELSIF source_frozen THEN
        decline := 'card_frozen';
    ELSIF p_risk_reject THEN
        decline := 'risk_rejected';
    ELSIF source_balance < p_amount THEN
        decline := 'insufficient_funds';
    END IF;

    RETURN QUERY INSERT INTO bnpl_sandboxcharge AS c
        (idempotency_key, funding_source_id, funding_token, amount, status, decline_code, reference, created_at)
        VALUES (p_key, source_id, p_token, p_amount, CASE WHEN decline = '' THEN 'succeeded' ELSE 'declined' END,
                decline, p_reference, now())
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING c.id, c.reference, c.status, c.decline_code, c.funding_token, c.amount, false;
    IF FOUND THEN
        IF decline = '' THEN
            UPDATE bnpl_sandboxfundingsource SET balance_amount = balance_amount - p_amount WHERE id = source_id;
        END IF;
        RETURN;
    END IF;

    -- A duplicate: the key's charge is recorded (and committed: ON CONFLICT waited for it).
    RETURN QUERY SELECT c.id, c.reference, c.status, c.decline_code, c.funding_token, c.amount, true
        FROM bnpl_sandboxcharge c WHERE c.idempotency_key = p_key;
END;
$$;
"""


def _previous() -> str:
    return importlib.import_module("bnpl.migrations.0009_sandbox_charge_function").CREATE


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0018_order_merchant_overdue_amount_idx"),
    ]

    operations = [migrations.RunSQL(CREATE, _previous())]
