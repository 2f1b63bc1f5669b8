"""The sandbox provider's charge as one database function (bnpl.gateway.sandbox.sandbox_charge).

One round trip instead of five: lock the funding source, replay an existing charge of the key, decide,
move the balance and record the charge. Each statement inside a PL/pgSQL function takes a fresh snapshot
(READ COMMITTED), so after waiting for the source's lock the function sees a duplicate that committed
meanwhile and replays it, exactly as the Python version did; the unique key stays the backstop.
"""

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

    RETURN QUERY SELECT c.id, c.reference, c.status, c.decline_code, c.funding_token, c.amount, true
        FROM bnpl_sandboxcharge c WHERE c.idempotency_key = p_key;
    IF FOUND THEN
        RETURN;
    END IF;

    IF source_id IS NULL THEN
        decline := 'account_closed';
    ELSIF source_frozen THEN
        decline := 'card_frozen';
    ELSIF p_risk_reject THEN
        decline := 'risk_rejected';
    ELSIF source_balance < p_amount THEN
        decline := 'insufficient_funds';
    ELSE
        UPDATE bnpl_sandboxfundingsource SET balance_amount = balance_amount - p_amount WHERE id = source_id;
    END IF;

    RETURN QUERY INSERT INTO bnpl_sandboxcharge AS c
        (idempotency_key, funding_source_id, funding_token, amount, status, decline_code, reference, created_at)
        VALUES (p_key, source_id, p_token, p_amount, CASE WHEN decline = '' THEN 'succeeded' ELSE 'declined' END,
                decline, p_reference, now())
        RETURNING c.id, c.reference, c.status, c.decline_code, c.funding_token, c.amount, false;
END;
$$;
"""
DROP = "DROP FUNCTION IF EXISTS bnpl_sandbox_charge(text, text, numeric, boolean, text);"


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0008_campaigns"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
