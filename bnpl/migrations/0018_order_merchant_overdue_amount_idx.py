"""Partial index for the merchant portal's overdue list sorted by amount (docs/performance.md).

A merchant with few overdue orders among many (10,000 orders, 427 overdue, in a 1,000,000-order table) got its
list through ``order_overdue_id_idx`` (the DPD refresh's index, migration 0014): every overdue order of the platform
read and filtered by merchant, then sorted — 27,000 pages and 185 ms. The planner costed that walk as nearly
sequential because ``id`` follows the table's physical order (correlation 1), while the overdue rows it reads are
spread over every page; and with the list's joins it could not place a sort under the join otherwise. An index in
the list's own order for overdue rows only reads the 51 rows the page shows (0.1 ms), and being partial it is
written only for overdue orders.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("bnpl", "0017_merchant_day_stats"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="creditorder",
            index=models.Index(
                condition=models.Q(("status", "overdue")),
                fields=["merchant", "-max_amount", "-id"],
                name="order_merchant_overdue_amt_idx",
            ),
        ),
    ]
