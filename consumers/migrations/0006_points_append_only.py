"""Points entries are append-only, enforced by the database (docs/incentives.md).

Written by hand, like the money ledger's triggers (``bnpl/migrations/0003_ledger_triggers.py``):
UPDATE and DELETE of a points entry raise for every client, including ``queryset.update()``,
``.delete()`` and raw SQL. A correction is a new, opposite entry. TRUNCATE is not refused (the
test runner empties tables with it between transactional tests).
"""

from django.db import migrations

FORWARD = r"""
CREATE FUNCTION consumers_points_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points entries are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Correct a balance with a new, opposite points entry.';
END;
$$;

CREATE TRIGGER consumers_pointsentry_append_only
    BEFORE UPDATE OR DELETE ON consumers_pointsentry
    FOR EACH ROW EXECUTE FUNCTION consumers_points_refuse_change();
"""

REVERSE = r"""
DROP TRIGGER IF EXISTS consumers_pointsentry_append_only ON consumers_pointsentry;
DROP FUNCTION IF EXISTS consumers_points_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("consumers", "0005_rewards"),
    ]

    operations = [
        migrations.RunSQL(sql=FORWARD, reverse_sql=REVERSE),
    ]
