"""Partial index for the DPD refresh of the overdue job: overdue orders in id order (docs/performance.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0013_staff_permissions_dashboard_indexes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="creditorder",
            index=models.Index(condition=models.Q(("status", "overdue")), fields=["id"], name="order_overdue_id_idx"),
        ),
    ]
