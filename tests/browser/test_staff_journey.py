"""Staff in zh-hans: the admin's log-in with password and TOTP token → approve a merchant's application →
watch a charge run finish and the order it charged.

The charge run is the scheduler's every-minute job (django-q2 runs ``run_charges``); the admin only shows
runs. The test starts the same function in a thread of its own, as the cluster's worker would, while the
browser watches the run list.
"""

from __future__ import annotations

import re
import threading
import time
from decimal import Decimal

from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from bnpl.charging import run_charges
from bnpl.choices import ActorKind, OrderStatus
from bnpl.gateway.services import sandbox_funding_source_add
from bnpl.models import ChargeRun, CreditOrder
from bnpl.models.charging import ChargeRunStatus
from bnpl.portal.services import catalogue_order_place
from bnpl.services import credit_order_complete, credit_order_confirm, usage_record
from bnpl.staff_otp import totp_current_token, totp_device_enrol
from merchants.choices import MerchantStatus
from merchants.models import Merchant
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory

from .conftest import Steps, zh

PASSWORD = "Ops-Passw0rd-2026"
WATCH_FOR_S = 30


def _completed_order(consumer) -> CreditOrder:
    """An e-bike charging order completed with 2 hours of usage, awaiting the charge run (the services)."""
    listing = ListingFactory()
    order = catalogue_order_place(actor=consumer.user, consumer=consumer, listing=listing, nonce="5eed00005eed0000")
    order = credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
    usage_record(
        actor=None,
        merchant=listing.merchant,
        order=order,
        merchant_event_id="s1",
        quantity="2",
        occurred_at=timezone.now(),
    )
    return credit_order_complete(actor=None, actor_kind=ActorKind.MERCHANT, order=order)


def _charge_run_in_background() -> threading.Thread:
    """The scheduler's charge run, started the way a django-q2 worker runs it: in another thread."""

    def work() -> None:
        try:
            run_charges(threads=1)
        finally:
            connection.close()

    thread = threading.Thread(target=work, name="charge-run", daemon=True)
    thread.start()
    return thread


def test_staff_log_in_with_totp_approve_a_merchant_and_watch_a_charge_run(page: Page, steps: Steps, settings):
    settings.BNPL_ADMIN_REQUIRE_OTP = True  # tests/conftest.py switches the second factor off elsewhere
    staff = UserFactory(username="ops", is_staff=True, is_superuser=True, password=PASSWORD)
    device = totp_device_enrol(actor=None, user=staff)
    applicant = MerchantFactory(display_name="顺达速运", status=MerchantStatus.SUBMITTED, approved_at=None)
    consumer = ConsumerFactory()
    sandbox_funding_source_add(actor=None, consumer=consumer, label="招商银行储蓄卡(1234)", balance_amount="50.00")
    order = _completed_order(consumer)
    assert order.status == OrderStatus.COMPLETED

    # Log in: the password alone is not enough; the token the authenticator shows now goes with it.
    page.goto("/admin/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.locator("#id_username").fill("ops")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#id_otp_token").fill(totp_current_token(device))
    steps.shot("admin-login-totp")
    page.locator("#login-form").get_by_role("button").click()
    expect(page.locator("#user-tools")).to_contain_text("ops")
    steps.shot("admin-index")

    # Approve the application: the change list filtered to submitted ones, tick it, run the action.
    page.goto(f"/admin/merchants/merchant/?status__exact={MerchantStatus.SUBMITTED}")
    row = page.locator("#result_list tbody tr").filter(has_text=applicant.legal_name)
    expect(row).to_have_count(1)
    row.get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option("approve_selected")
    steps.shot("merchant-approve-action")
    page.locator("#changelist-form button[name=index]").click()
    message = zh("Approved: %(names)s.") % {"names": str(applicant)}
    expect(page.locator(".messagelist")).to_contain_text(message)
    steps.shot("merchant-approved")
    assert Merchant.objects.get(pk=applicant.pk).status == MerchantStatus.APPROVED

    # The charge runs: none yet. The scheduler's run starts; the list is watched until the run has finished.
    page.goto("/admin/bnpl/chargerun/")
    expect(page.locator("#result_list")).to_have_count(0)
    steps.shot("charge-runs-before")
    worker = _charge_run_in_background()
    finished = page.locator("#result_list tbody tr").filter(has_text=zh("Finished"))
    deadline = time.monotonic() + WATCH_FOR_S
    while finished.count() == 0:  # the admin's list has no live refresh: staff reload it, as here
        assert time.monotonic() < deadline, "the charge run did not finish in time"
        page.reload()
    worker.join(timeout=WATCH_FOR_S)
    steps.shot("charge-run-finished")

    run = ChargeRun.objects.get()
    assert (run.status, run.succeeded, run.succeeded_amount) == (ChargeRunStatus.FINISHED, 1, Decimal("2.00"))
    finished.get_by_role("link", name=str(run.pk), exact=True).click()
    expect(page.locator("div.field-succeeded")).to_contain_text("1")
    steps.shot("charge-run-detail")

    # The order it charged, in the credit-order admin with its attempt.
    page.goto(f"/admin/bnpl/creditorder/{order.pk}/change/")
    expect(page.locator("#content")).to_contain_text(zh("Paid"))
    expect(page.locator("#content")).to_contain_text(re.compile(r"2\.00"))
    steps.shot("order-paid")
    assert CreditOrder.objects.get(pk=order.pk).status == OrderStatus.PAID
