"""Simulated reminder history for the "does it work?" report (not a test): the real sweeps, charge run and report.

    .venv/bin/python bench/reminder_history.py                      # 2,000 goods orders, control share 0.5
    .venv/bin/python bench/reminder_history.py --orders 5000 --topup-reminded 0.5 --topup-control 0.2

Runs in its own database, ``bnpl_reminder_sim`` (dropped and migrated every run) on the server DATABASE_URL
names (or the embedded one). It builds ``--orders`` live-stream goods orders completed now and due in 7 days,
one per consumer, each consumer with a default sandbox card: ``--short-share`` of them hold less than the bill.
Then it moves the clock (time-machine) through the orders' life and runs the platform's own code at each
moment: the pre-charge sweep 5 days before the charge (the mandatory notice), 1 day before (the optional
reminder, withheld from the control group drawn by ``BNPL_REMINDER_CONTROL_SHARE``), the delivery job, and the
charge run at the due time; finally ``reminder_report``.

What it does *not* measure is people: the consumers are a stated behaviour model. A consumer short of money
tops up before the charge with probability ``--topup-reminded`` if the optional reminder reached them and
``--topup-control`` if it did not. The report then recovers that difference from the platform's records,
which shows the pipeline (assignment, hold-outs, reminders, outcomes, the figures) works end to end; the
real effect of reminders can only come from real consumers with a control share above 0.
It also times the sweeps and the delivery job. Prints the report and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import use_bench_database  # noqa: E402  (bench/ is on sys.path when a script runs)

sys.path.insert(0, str(ROOT / "bench"))
SIM_DB = "bnpl_reminder_sim"


def prepare_database() -> None:
    use_bench_database(SIM_DB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--control-share", type=float, default=0.5)
    parser.add_argument("--short-share", type=float, default=0.3, help="consumers holding less than the bill")
    parser.add_argument("--topup-reminded", type=float, default=0.5)
    parser.add_argument("--topup-control", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    prepare_database()

    import django

    django.setup()
    import time_machine
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from bnpl.charging import run_charges
    from bnpl.choices import OrderStatus
    from bnpl.ledger import post_completion
    from bnpl.models import CreditOrder, SandboxFundingSource
    from bnpl.notifications.models import Notification, ReminderHoldout
    from bnpl.notifications.reminders import sweep_pre_charge
    from bnpl.notifications.report import reminder_report
    from bnpl.notifications.services import deliver_due
    from consumers.models import Consumer, CreditProfile
    from merchants.choices import ConfirmMode, MerchantStatus, Scenario
    from merchants.models import Listing, Merchant

    call_command("migrate", verbosity=0)
    settings.BNPL_REMINDER_CONTROL_SHARE = args.control_share
    settings.BNPL_SMS_BACKEND = "bnpl.notifications.backends.LocmemSmsBackend"
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    rng = random.Random(args.seed)
    bill = Decimal("50.00")
    # 10:00 Beijing time, so the SMS of each moment goes out at once (outside quiet hours).
    start = timezone.now().replace(hour=2, minute=0, second=0, microsecond=0)
    due = start + timedelta(days=7)

    with time_machine.travel(start, tick=False):
        merchant = Merchant.objects.create(
            legal_name="模拟直播电商有限公司", display_name="模拟直播间", uscc="91330106MA2000001X",
            legal_representative="张三", contact_name="李四", contact_phone="13900000001", city="杭州",
            categories=["live_shopping"], settlement_bank_name="招商银行", settlement_account_name="模拟",
            settlement_account_number="6225880123456789", fee_rate=Decimal("0.0060"),
            status=MerchantStatus.APPROVED, submitted_at=start, approved_at=start,
        )  # fmt: skip
        listing = Listing.objects.create(
            merchant=merchant, title="直播好物", description="", scenario=Scenario.LIVE_SHOPPING,
            confirm_mode=ConfirmMode.EACH_TIME, max_amount=Decimal("100.00"), min_score=550, order_ttl_minutes=30,
            pricing_rule={"kind": "fixed", "amount": "50.00"},
        )  # fmt: skip
        user_model = get_user_model()
        users = user_model.objects.bulk_create(
            [user_model(username=f"sim{i}", email=f"sim{i}@example.com", password="!") for i in range(args.orders)]
        )
        consumers = Consumer.objects.bulk_create(
            [Consumer(user=u, phone=f"137{i:08d}", phone_verified=True, city="杭州") for i, u in enumerate(users)]
        )
        CreditProfile.objects.bulk_create(
            [CreditProfile(consumer=c, score=650, credit_limit_amount=Decimal("1000.00"), open_exposure_amount=bill)
             for c in consumers]
        )  # fmt: skip
        short = {c.pk for c in consumers if rng.random() < args.short_share}
        SandboxFundingSource.objects.bulk_create(
            [SandboxFundingSource(consumer=c, label="模拟银行卡", is_default=True,
                                  balance_amount=Decimal("10.00") if c.pk in short else Decimal("500.00"))
             for c in consumers]
        )  # fmt: skip
        orders = CreditOrder.objects.bulk_create(
            [CreditOrder(merchant=merchant, listing=listing, consumer=c, out_order_no=f"SIM-{c.pk}", title="直播好物",
                         scenario=Scenario.LIVE_SHOPPING, confirm_mode=ConfirmMode.EACH_TIME,
                         pricing_rule=listing.pricing_rule, status=OrderStatus.COMPLETED, max_amount=Decimal("100.00"),
                         amount_due=bill, hold_amount=bill, confirmed_at=start, completed_at=start, due_at=due)
             for c in consumers]
        )  # fmt: skip
        for order in orders:
            post_completion(order)

    timings: dict[str, float] = {}
    for label, moment in (("notice", due - timedelta(days=5)), ("reminder", due - timedelta(days=1))):
        with time_machine.travel(moment, tick=True):
            began = time.perf_counter()
            counts = sweep_pre_charge(limit=args.orders + 1)
            timings[f"sweep_{label}_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            sent = 0
            while True:
                report = deliver_due(limit=500)
                sent += report.sent
                if not (report.sent or report.retrying or report.failed):
                    break
            timings[f"deliver_{label}_s"] = round(time.perf_counter() - began, 3)
            print(f"{label}: {counts}, {sent} deliveries sent", file=sys.stderr)

    # The behaviour model: who tops up before the charge.
    reminded = set(
        Notification.objects.filter(kind="charge_upcoming", dedupe_key__contains=":24h:").values_list(
            "consumer_id", flat=True
        )
    )
    topped = [pk for pk in short if rng.random() < (args.topup_reminded if pk in reminded else args.topup_control)]
    SandboxFundingSource.objects.filter(consumer_id__in=topped).update(balance_amount=Decimal("500.00"))

    with time_machine.travel(due + timedelta(minutes=1), tick=True):
        began = time.perf_counter()
        run = run_charges(threads=4)
        timings["charge_run_s"] = round(time.perf_counter() - began, 3)
    with time_machine.travel(due + timedelta(days=1), tick=True):
        report = reminder_report(since=start, until=due + timedelta(days=1))
    for line in report.lines():
        print(line)
    print(
        json.dumps(
            {
                "orders": args.orders,
                "held_out": ReminderHoldout.objects.count(),
                "charged": run.succeeded,
                "declined": run.declined,
                "reminded_rate": round(report.reminded.rate or 0, 4),
                "control_rate": round(report.control.rate or 0, 4),
                "difference": round(report.difference or 0, 4),
                **timings,
            }
        )
    )


if __name__ == "__main__":
    main()
