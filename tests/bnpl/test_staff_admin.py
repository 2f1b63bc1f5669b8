"""Staff admin ready for daily work: the dashboard landing page, least-privilege staff groups, the task pages.

Group users are real non-superuser staff in the groups written by ``setup_staff_groups``; every access check goes
through the admin over HTTP (the second factor is off in the suite, tests/conftest.py; it is tested on its own in
tests/security/test_admin_otp.py).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Failure, Schedule, Success

from bnpl.admin_dashboard import dashboard_for, day_start
from bnpl.choices import OrderStatus
from bnpl.models import ChargeAttempt, ChargeRun, CreditOrder, Dispute
from bnpl.models.charging import AttemptStatus, ChargeRunKind, ChargeRunStatus
from bnpl.models.settlement import DisputeStatus
from bnpl.overdue import classify_overdue
from bnpl.staff_groups import STAFF_GROUPS, StaffGroupSpec, UnknownPermission, staff_groups_sync
from merchants.choices import MerchantStatus
from merchants.models import Merchant
from merchants.selectors import api_key_get_by_token
from merchants.services import api_key_create
from merchants.webhooks import decrypt_secret, encrypt_secret
from tests.bnpl.charging_helpers import due_order
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory

S = OrderStatus
D = Decimal
pytestmark = pytest.mark.django_db

SPECS = {spec.name: spec for spec in STAFF_GROUPS}


@pytest.fixture
def groups(db) -> None:
    staff_groups_sync()


@pytest.fixture
def as_group(groups):
    """A logged-in client of a non-superuser staff member of one group."""

    def login(name: str) -> Client:
        user = UserFactory(username=f"staff-{name}", is_staff=True)
        user.groups.add(Group.objects.get(name=name))
        client = Client()
        client.force_login(user)
        return client

    return login


def _group_permissions(name: str) -> set[str]:
    return {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename")
    }


def _visible_models(spec: StaffGroupSpec) -> set[str]:
    """Models whose admin list the group may open: those it may view or change (the admin's own rule)."""
    visible = set()
    for model in admin.site._registry:
        opts = model._meta
        if {f"{opts.app_label}.view_{opts.model_name}", f"{opts.app_label}.change_{opts.model_name}"} & set(
            spec.permissions
        ):
            visible.add(opts.label_lower)
    return visible


def _offered_actions(client: Client, url: str) -> set[str]:
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


# --------------------------------------------------------------------------- setup_staff_groups


def test_setup_staff_groups_creates_each_group_with_exactly_its_permissions_and_is_idempotent(db, capsys):
    Group.objects.create(name="ad-hoc")  # someone's own group: left alone

    call_command("setup_staff_groups")
    assert "created: reviewer" in capsys.readouterr().out
    for spec in STAFF_GROUPS:
        assert _group_permissions(spec.name) == set(spec.permissions)

    call_command("setup_staff_groups")
    assert "Staff groups are up to date; nothing changed." in capsys.readouterr().out
    assert Group.objects.count() == len(STAFF_GROUPS) + 1


def test_setup_staff_groups_revokes_a_permission_granted_by_hand_and_restores_a_removed_one(groups, capsys):
    support = Group.objects.get(name="support")
    support.permissions.add(Permission.objects.get(content_type__app_label="bnpl", codename="view_ledgerentry"))
    support.permissions.remove(Permission.objects.get(content_type__app_label="bnpl", codename="decide_dispute"))

    dry = staff_groups_sync(dry_run=True)
    assert (dry.added, dry.removed) == ({"support": ["bnpl.decide_dispute"]}, {"support": ["bnpl.view_ledgerentry"]})
    assert "bnpl.view_ledgerentry" in _group_permissions("support")  # the dry run wrote nothing

    call_command("setup_staff_groups")
    out = capsys.readouterr().out
    assert "support: granted bnpl.decide_dispute" in out and "support: revoked bnpl.view_ledgerentry" in out
    assert _group_permissions("support") == set(SPECS["support"].permissions)


def test_an_unknown_permission_fails_the_sync_and_writes_nothing(db):
    bad = StaffGroupSpec(name="typo", description="", permissions=("bnpl.view_creditorder", "bnpl.view_nothing"))
    with pytest.raises(UnknownPermission, match=r"bnpl\.view_nothing"):
        staff_groups_sync(specs=[bad])
    assert not Group.objects.filter(name="typo").exists()


def test_groups_grant_the_sensitive_actions_to_one_kind_of_staff_each():
    holders = {
        perm: {spec.name for spec in STAFF_GROUPS if perm in spec.permissions}
        for perm in (
            "merchants.review_merchant",
            "bnpl.write_off_creditorder",
            "bnpl.retry_charge_creditorder",
            "bnpl.decide_dispute",
            "consumers.change_creditprofile",
            "bnpl.change_payout",
        )
    }
    assert holders == {
        "merchants.review_merchant": {"reviewer"},
        "bnpl.write_off_creditorder": {"finance"},
        "bnpl.retry_charge_creditorder": {"finance"},
        "bnpl.decide_dispute": {"support"},
        "consumers.change_creditprofile": {"risk"},
        "bnpl.change_payout": {"finance"},
    }
    # Nobody but a superuser manages staff, devices or the audit trail.
    granted = {p for spec in STAFF_GROUPS for p in spec.permissions}
    assert not {p for p in granted if p.split(".")[0] in {"auth", "otp_totp", "axes", "pghistory"}}
    assert not {p for p in granted if p.split(".")[1].startswith("delete_")}


# --------------------------------------------------------------------------- what each group sees


@pytest.mark.parametrize("name", [spec.name for spec in STAFF_GROUPS])
def test_each_group_opens_exactly_its_models_in_the_admin(as_group, name):
    client = as_group(name)
    visible = _visible_models(SPECS[name])
    assert visible  # every group has work to do

    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    listed = {
        f"{app['app_label']}.{m['object_name'].lower()}" for app in index.context["app_list"] for m in app["models"]
    }
    assert listed == visible

    for model in admin.site._registry:
        opts = model._meta
        response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        expected = 200 if opts.label_lower in visible else 403
        assert response.status_code == expected, (name, opts.label_lower, response.status_code)


@pytest.mark.parametrize(
    ("name", "url_name"),
    [
        ("reviewer", "admin:notifications_notification_report"),
        ("finance", "admin:bnpl_rewards_programme"),
        ("risk", "admin:bnpl_settlementbatch_statement"),
        ("support", "admin:bnpl_ledgertransaction_changelist"),
        ("support", "admin:bnpl_ledgerentry_changelist"),
        ("support", "admin:bnpl_settlementbatch_changelist"),
        ("support", "admin:bnpl_payout_changelist"),
        ("support", "admin:bnpl_ledger_check"),
        ("reviewer", "admin:bnpl_creditorder_changelist"),
        ("reviewer", "admin:consumers_creditprofile_changelist"),
        ("risk", "admin:bnpl_ledgertransaction_changelist"),
        ("risk", "admin:merchants_merchant_changelist"),
        ("finance", "admin:consumers_creditprofile_changelist"),
        ("finance", "admin:scoring_scorecard_changelist"),
        ("finance", "admin:auth_user_changelist"),
    ],
)
def test_pages_outside_a_groups_work_are_forbidden(as_group, name, url_name):
    args = [1] if url_name.endswith("_statement") else []
    assert as_group(name).get(reverse(url_name, args=args)).status_code == 403


def test_the_reminder_report_opens_for_support_who_may_view_notifications(as_group):
    assert as_group("support").get(reverse("admin:notifications_notification_report")).status_code == 200


def test_staff_without_a_group_see_no_dashboard_and_no_model(db, client):
    client.force_login(UserFactory(username="new-hire", is_staff=True))
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert index.context["dashboard"] == {} and index.context["app_list"] == []
    assert 'id="staff-dashboard"' not in index.text
    assert client.get(reverse("admin:bnpl_creditorder_changelist")).status_code == 403


# --------------------------------------------------------------------------- actions check their own permission


@pytest.mark.parametrize(
    ("name", "url_name", "actions"),
    [
        ("support", "admin:bnpl_creditorder_changelist", {"cancel_with_reason", "expire_overdue_confirmations"}),
        ("finance", "admin:bnpl_creditorder_changelist", {"retry_charge_now", "write_off_with_reason"}),
        ("risk", "admin:bnpl_creditorder_changelist", set()),
        (
            "reviewer",
            "admin:merchants_merchant_changelist",
            {"approve_selected", "reject_selected", "suspend_selected", "reinstate_selected"},
        ),
        ("finance", "admin:merchants_merchant_changelist", set()),
        ("support", "admin:merchants_merchant_changelist", set()),
        ("support", "admin:bnpl_dispute_changelist", {"decide_for_consumer", "decide_for_merchant"}),
        ("finance", "admin:bnpl_dispute_changelist", set()),
        ("finance", "admin:bnpl_chargerun_changelist", {"retry_failures"}),
        ("support", "admin:bnpl_chargeattempt_changelist", set()),
        ("finance", "admin:bnpl_payout_changelist", {"send_now", "mark_paid"}),
        ("risk", "admin:consumers_creditprofile_changelist", {"adjust_limit", "pause", "unpause"}),
        ("support", "admin:consumers_creditprofile_changelist", set()),
        ("finance", "admin:django_q_failure_changelist", set()),
    ],
)
def test_each_group_is_offered_exactly_the_actions_of_its_permissions(as_group, name, url_name, actions):
    assert _offered_actions(as_group(name), reverse(url_name)) == actions


def test_superusers_are_offered_every_action_including_resubmitting_tasks(staff_user, client):
    client.force_login(staff_user)
    assert "write_off_with_reason" in _offered_actions(client, reverse("admin:bnpl_creditorder_changelist"))
    assert "resubmit_selected" in _offered_actions(client, reverse("admin:django_q_failure_changelist"))


def _overdue_order() -> CreditOrder:
    listing, consumer = ListingFactory(), ConsumerFactory()
    past = timezone.now() - timedelta(days=10)
    order = due_order(
        listing, consumer, status=S.COLLECTING, due_at=past, collecting_since=past, charge_failure_count=1
    )
    classify_overdue()
    order.refresh_from_db()
    assert order.status == S.OVERDUE
    return order


def test_support_cannot_write_off_even_with_the_change_permission_on_orders(as_group):
    order = _overdue_order()
    url = reverse("admin:bnpl_creditorder_changelist")
    data = {"action": "write_off_with_reason", ACTION_CHECKBOX_NAME: [order.pk], "apply": "1", "reason": "give up"}

    response = as_group("support").post(url, data)
    assert response.status_code == 302  # the admin drops an action the user is not offered ("no action selected")
    order.refresh_from_db()
    assert order.status == S.OVERDUE
    assert as_group("reviewer").post(url, data).status_code == 403  # reviewers do not even see orders
    order.refresh_from_db()
    assert order.status == S.OVERDUE


def test_finance_writes_off_an_overdue_order(as_group):
    order = _overdue_order()
    data = {
        "action": "write_off_with_reason",
        ACTION_CHECKBOX_NAME: [order.pk],
        "apply": "1",
        "reason": "uncollectable",
    }
    assert as_group("finance").post(reverse("admin:bnpl_creditorder_changelist"), data).status_code == 302
    order.refresh_from_db()
    assert (order.status, order.close_reason) == (S.WRITTEN_OFF, "uncollectable")


def test_only_reviewers_approve_merchants(as_group):
    merchant = MerchantFactory(status=MerchantStatus.SUBMITTED, approved_at=None)
    url = reverse("admin:merchants_merchant_changelist")
    data = {"action": "approve_selected", ACTION_CHECKBOX_NAME: [merchant.pk]}

    as_group("finance").post(url, data)  # finance has no action on merchants: the POST does nothing
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.SUBMITTED

    assert as_group("reviewer").post(url, data).status_code == 302
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.APPROVED


def test_finance_cannot_decide_a_dispute_support_can(as_group):
    order = order_in(S.PAID, listing=ListingFactory(), consumer=ConsumerFactory())
    dispute = _dispute(order, respond_by=timezone.now() - timedelta(hours=1))
    url = reverse("admin:bnpl_dispute_changelist")
    data = {"action": "decide_for_merchant", ACTION_CHECKBOX_NAME: [dispute.pk], "apply": "1", "reason": "delivered"}

    as_group("finance").post(url, data)
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN

    assert as_group("support").post(url, data).status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome) == (DisputeStatus.DECIDED, "merchant_won")


def test_task_pages_are_on_the_staff_site_and_resubmitting_needs_the_change_permission(as_group, staff_user):
    for model in (Schedule, Success, Failure):
        assert admin.site.is_registered(model)
    failure = Failure.objects.create(
        id="a" * 32,
        name="failed-job",
        func="math.floor",
        args=(1.5,),
        kwargs={},
        started=timezone.now(),
        stopped=timezone.now(),
        success=False,
        result="boom",
    )
    url = reverse("admin:django_q_failure_changelist")
    data = {"action": "resubmit_selected", ACTION_CHECKBOX_NAME: [failure.pk]}

    finance = as_group("finance")
    assert finance.get(url).status_code == 200
    finance.post(url, data)
    assert Failure.objects.filter(pk=failure.pk).exists()  # not resubmitted (resubmitting deletes the row)
    assert as_group("support").get(url).status_code == 403


# --------------------------------------------------------------------------- the dashboard


def _dispute(order: CreditOrder, *, respond_by, status=DisputeStatus.OPEN) -> Dispute:
    return Dispute.objects.create(
        order=order,
        consumer=order.consumer,
        merchant=order.merchant,
        reason="wrong_amount",
        disputed_amount=D("1.00"),
        respond_by=respond_by,
        status=status,
    )


def _run(started_at, *, status=ChargeRunStatus.FINISHED, kind=ChargeRunKind.CHARGE, **counters) -> ChargeRun:
    return ChargeRun.objects.create(
        kind=kind,
        worker="w1",
        status=status,
        started_at=started_at,
        progress_at=started_at,
        finished_at=None if status == ChargeRunStatus.RUNNING else started_at + timedelta(seconds=30),
        **counters,
    )


def _attempt(order: CreditOrder, status: str, *, requested_at, amount="5.00", seq=1) -> ChargeAttempt:
    CreditOrder.objects.filter(pk=order.pk).update(charge_attempt_count=seq)
    return ChargeAttempt.objects.create(
        order=order,
        sequence=seq,
        idempotency_key=f"k-{order.pk}-{seq}",
        trigger="scheduled",
        amount=D(amount),
        status=status,
        decline_code="insufficient_funds" if status == AttemptStatus.DECLINED else "",
        requested_at=requested_at,
        finished_at=None if status == AttemptStatus.UNKNOWN else requested_at,
    )


@pytest.fixture
def busy_day(db):
    """A day with runs, failures, overdue orders, a review queue and disputes; and rows outside each window."""
    now = timezone.now()
    midnight = day_start(now)
    listing = ListingFactory()

    def order(status, **extra):
        return order_in(status, listing=listing, consumer=ConsumerFactory(), **extra)

    _run(
        midnight + timedelta(minutes=1),
        claimed=3,
        succeeded=2,
        declined=1,
        succeeded_amount=D("12.00"),
        declined_amount=D("5.00"),
    )
    _run(midnight + timedelta(minutes=2), claimed=1, succeeded=1, succeeded_amount=D("3.50"))
    _run(midnight + timedelta(minutes=3), status=ChargeRunStatus.FAILED, errors=1)
    latest = _run(now - timedelta(seconds=5), status=ChargeRunStatus.RUNNING, kind=ChargeRunKind.RECONCILE)
    _run(midnight - timedelta(minutes=5), claimed=100, succeeded=100, succeeded_amount=D("500.00"))  # yesterday

    collecting = [order(S.COLLECTING) for _ in range(4)]
    _attempt(collecting[0], AttemptStatus.DECLINED, requested_at=now - timedelta(seconds=30), amount="5.00")
    _attempt(collecting[1], AttemptStatus.DECLINED, requested_at=now - timedelta(seconds=20), amount="7.00")
    _attempt(collecting[2], AttemptStatus.UNKNOWN, requested_at=now - timedelta(seconds=10), amount="2.50")
    _attempt(collecting[3], AttemptStatus.DECLINED, requested_at=midnight - timedelta(minutes=1))  # yesterday

    order(S.OVERDUE, dpd_bucket="M0", dpd=5)
    order(S.OVERDUE, dpd_bucket="M0", dpd=20, amount_due=D("3.00"))
    order(S.OVERDUE, dpd_bucket="M3+", dpd=120)
    order(S.WRITTEN_OFF, dpd_bucket="M3+", dpd=200)  # no longer overdue

    MerchantFactory(status=MerchantStatus.SUBMITTED, submitted_at=now - timedelta(days=3), approved_at=None)
    MerchantFactory(status=MerchantStatus.SUBMITTED, submitted_at=now - timedelta(days=1), approved_at=None)
    MerchantFactory(status=MerchantStatus.DRAFT, approved_at=None)

    due_soon = _dispute(order(S.PAID), respond_by=now + timedelta(hours=10))
    past = _dispute(order(S.PAID), respond_by=now - timedelta(hours=2))
    _dispute(order(S.PAID), respond_by=now + timedelta(days=5))  # not near
    _dispute(order(S.PAID), respond_by=now + timedelta(hours=5), status=DisputeStatus.MERCHANT_RESPONDED)
    return {"now": now, "latest_run": latest, "due_soon": due_soon, "past": past}


def test_dashboard_figures_for_a_busy_day(busy_day, django_assert_num_queries, staff_user):
    with django_assert_num_queries(7):
        dashboard = dashboard_for(staff_user, now=busy_day["now"])

    runs = dashboard["charge_runs"]
    finished = next(g for g in runs.groups if (g.kind, g.status) == ("charge", "finished"))
    assert (finished.runs, finished.claimed, finished.succeeded, finished.declined) == (2, 4, 3, 1)
    assert (finished.succeeded_amount, finished.declined_amount) == (D("15.50"), D("5.00"))
    assert {(g.kind, g.status, g.runs) for g in runs.groups} == {
        ("charge", "finished", 2),
        ("charge", "failed", 1),
        ("reconcile", "running", 1),
    }
    assert (runs.runs, runs.failed_runs, runs.succeeded_amount) == (4, 1, D("15.50"))
    assert runs.latest == busy_day["latest_run"]

    failures = {row.status: (row.attempts, row.amount) for row in dashboard["charge_failures"]}
    assert failures == {"declined": (2, D("12.00")), "unknown": (1, D("2.50")), "not_found": (0, D("0.00"))}

    overdue = dashboard["overdue"]
    assert [(b.bucket, b.orders, b.amount) for b in overdue.buckets] == [
        ("M0", 2, D("8.00")),
        ("M1", 0, D("0.00")),
        ("M2", 0, D("0.00")),
        ("M3+", 1, D("5.00")),
    ]
    assert (overdue.orders, overdue.amount) == (3, D("13.00"))

    queue = dashboard["review_queue"]
    assert queue.merchants == 2
    assert (
        queue.oldest_submitted_at
        == Merchant.objects.filter(status="submitted").order_by("submitted_at")[0].submitted_at
    )

    disputes = dashboard["disputes"]
    assert (disputes.due_soon, disputes.past_deadline, disputes.awaiting_decision) == (1, 1, 1)
    assert disputes.soonest == [busy_day["past"], busy_day["due_soon"]]


def test_dashboard_links_open_lists_with_the_same_rows(busy_day, staff_user, client):
    client.force_login(staff_user)
    dashboard = dashboard_for(staff_user, now=busy_day["now"])

    def rows(url: str) -> int:
        page = client.get(url)
        assert page.status_code == 200, url  # not the admin's redirect for a filter it refuses (?e=1)
        return page.context["cl"].result_count

    assert rows(dashboard["charge_runs"].url) == 4
    assert [rows(row.url) for row in dashboard["charge_failures"]] == [2, 1, 0]
    assert [rows(b.url) for b in dashboard["overdue"].buckets] == [2, 0, 0, 1]
    assert rows(dashboard["overdue"].url) == 3
    assert rows(dashboard["review_queue"].url) == 2
    disputes = dashboard["disputes"]
    assert (rows(disputes.due_soon_url), rows(disputes.past_deadline_url), rows(disputes.awaiting_decision_url)) == (
        1,
        1,
        1,
    )


def test_landing_page_shows_the_dashboard_above_the_app_list_without_inline_script_or_style(
    busy_day, staff_user, client
):
    client.force_login(staff_user)
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    html = page.text
    dashboard_html = html[html.index('id="staff-dashboard"') : html.index('id="content-main"')]
    for panel in ("charge-runs", "charge-failures", "overdue", "review-queue", "disputes"):
        assert f'id="dashboard-{panel}"' in dashboard_html
    assert "2 applications awaiting review" in dashboard_html
    assert reverse("admin:bnpl_dispute_change", args=[busy_day["due_soon"].pk]) in dashboard_html
    assert not re.search(r"<script|<style|\sstyle=", dashboard_html)
    assert "css/admin-dashboard.css" in html
    assert page.context["app_list"]  # the apps are still listed below


@pytest.mark.parametrize(
    ("name", "panels"),
    [
        ("reviewer", {"review_queue"}),
        ("risk", {"charge_failures", "overdue"}),
        ("finance", {"charge_runs", "charge_failures", "overdue", "review_queue", "disputes"}),
        ("support", {"charge_failures", "overdue", "review_queue", "disputes"}),
    ],
)
def test_each_group_sees_the_panels_of_the_models_it_may_view(busy_day, as_group, name, panels):
    page = as_group(name).get(reverse("admin:index"))
    assert set(page.context["dashboard"]) == panels
    assert ('id="dashboard-charge-runs"' in page.text) == ("charge_runs" in panels)


# --------------------------------------------------------------------------- secret rotation (docs/operations.md)


def test_rotating_the_secret_key_with_a_fallback_keeps_api_keys_and_webhook_secrets_working(settings, merchant):
    settings.SECRET_KEY, settings.BNPL_WEBHOOK_SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "old-key-" + "x" * 50, "", []
    key, token = api_key_create(actor=None, merchant=merchant, mode="test")
    stored = encrypt_secret("whsec_example")

    settings.SECRET_KEY = "new-key-" + "y" * 50
    assert api_key_get_by_token(token=token) is None  # without the fallback every key stops working
    with pytest.raises(ValueError, match="cannot be decrypted"):
        decrypt_secret(stored)

    settings.SECRET_KEY_FALLBACKS = ["old-key-" + "x" * 50]
    assert api_key_get_by_token(token=token) == key
    assert decrypt_secret(stored) == "whsec_example"
