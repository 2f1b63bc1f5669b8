"""Staff groups with least privilege, declared as data, and the code that writes them to ``auth.Group``.

``STAFF_GROUPS`` is the single source of truth for what each kind of platform staff may see and do in the admin.
``manage.py setup_staff_groups`` (run on every deploy, see docs/operations.md) makes each group's permissions equal
to its declaration: groups are created when missing, permissions added and removed, so a permission granted by
hand in the admin does not survive the next deploy. Groups not declared here are left alone (a superuser may keep
ad-hoc groups), and users are never touched: who is in which group is decided in the admin.

How the admin reads these permissions:

- ``view_<model>`` opens a model's list and pages. Most rows are read-only for everybody (they change through
  services), so ``view`` is what a group needs to do its work; inline rows (an order's bill lines, a dispute's
  evidence) need ``view`` on their own model too, or the inline is not shown.
- ``change_<model>`` on a read-only model only gates that page's actions (cancel an order with a reason, adjust a
  limit, pause a listing, mark a payout paid).
- Actions that move money or let a merchant sell have their own permission, so that they are not granted along
  with an ordinary change: ``merchants.review_merchant`` (approve, reject, suspend, reinstate),
  ``bnpl.write_off_creditorder``, ``bnpl.retry_charge_creditorder`` and ``bnpl.decide_dispute``.

Nobody but a superuser sees the ledger's sandbox fault settings, API keys and webhook endpoints, the audit trail,
users and groups, TOTP devices or the login lock-outs: those are platform engineering and security work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.db.models import Q

# Key of the transaction-level advisory lock that serialises concurrent `setup_staff_groups` runs (two machines
# deploying at once would otherwise both create a missing group, and one would fail on the unique name).
_SYNC_LOCK_KEY = 0x626E706C_5347  # "bnpl" "SG"


def _view(*models: str) -> tuple[str, ...]:
    """``app_label.model_name`` → ``app_label.view_model_name`` for each."""
    return tuple(f"{label}.view_{name}" for label, name in (m.split(".") for m in models))


@dataclass(frozen=True, kw_only=True)
class StaffGroupSpec:
    """One staff group: its name, what it is for, and its permissions as ``app_label.codename``."""

    name: str
    description: str
    permissions: tuple[str, ...]


# Rows several groups read to make sense of an order: its bill, usage and timeline (inlines of the order page).
_ORDER_ROWS = _view("bnpl.creditorder", "bnpl.billline", "bnpl.usageevent", "bnpl.orderevent", "bnpl.chargeattempt")

STAFF_GROUPS: tuple[StaffGroupSpec, ...] = (
    StaffGroupSpec(
        name="reviewer",
        description=(
            "Merchant review (KYB): reads and corrects applications, approves, rejects, suspends and reinstates "
            "merchants, and may take a listing off sale. Sees no consumer, order or money data."
        ),
        permissions=(
            *_view(
                "merchants.merchant",
                "merchants.merchantevent",
                "merchants.merchantmember",
                "merchants.listing",
                "merchants.merchantactivity",
                "merchants.merchantinvitation",
            ),
            "merchants.add_merchant",
            "merchants.change_merchant",
            "merchants.review_merchant",
            "merchants.change_listing",
        ),
    ),
    StaffGroupSpec(
        name="risk",
        description=(
            "Credit risk: credit profiles and limits (adjust, pause), scorecards (activate, monitoring), the "
            "blocklist, admission decisions, overdue orders and what was written off. Reads orders but cannot "
            "write off, charge again or touch the ledger."
        ),
        permissions=(
            *_view(
                "consumers.consumer",
                "consumers.creditprofile",
                "consumers.limitchange",
                "consumers.creditprofileevent",
                "consumers.promiserecord",
                "scoring.scorecard",
                "scoring.scorecardevent",
                "scoring.admissiondecision",
                "scoring.blocklistentry",
                "scoring.consumerfeatures",
            ),
            *_ORDER_ROWS,
            "consumers.change_creditprofile",
            "scoring.change_scorecard",
            "scoring.add_blocklistentry",
            "scoring.change_blocklistentry",
        ),
    ),
    StaffGroupSpec(
        name="finance",
        description=(
            "Finance: the ledger (read-only), settlement batches and statements, payouts (send, mark paid), charge "
            "runs and attempts (charge again), write-offs, refunds, and the background task pages. Reads merchants "
            "and disputes (held amounts) but cannot approve a merchant or decide a dispute."
        ),
        permissions=(
            *_view(
                "bnpl.ledgeraccount",
                "bnpl.ledgertransaction",
                "bnpl.ledgerentry",
                "bnpl.settlementbatch",
                "bnpl.settlementitem",
                "bnpl.payout",
                "bnpl.chargerun",
                "bnpl.refund",
                "bnpl.dispute",
                "bnpl.sandboxcharge",
                "bnpl.sandboxrefund",
                "merchants.merchant",
                "django_q.schedule",
                "django_q.success",
                "django_q.failure",
            ),
            *_ORDER_ROWS,
            "bnpl.change_payout",
            "bnpl.retry_charge_creditorder",
            "bnpl.write_off_creditorder",
        ),
    ),
    StaffGroupSpec(
        name="support",
        description=(
            "Customer support: orders (cancel with a reason, close a standing agreement), disputes (decide), "
            "consumers and their rewards read-only, notifications and deliveries. No ledger, settlement, payouts, "
            "limits or merchant review."
        ),
        permissions=(
            *_view(
                "bnpl.agreement",
                "bnpl.refund",
                "bnpl.dispute",
                "bnpl.disputeevidence",
                "bnpl.disputeevent",
                "bnpl.coupon",
                "consumers.consumer",
                "consumers.creditprofile",
                "consumers.promiserecord",
                "consumers.rewardaccount",
                "consumers.pointsentry",
                "consumers.levelchange",
                "merchants.merchant",
                "merchants.listing",
                "notifications.notification",
                "notifications.delivery",
                "notifications.notificationpreference",
            ),
            *_ORDER_ROWS,
            "bnpl.change_creditorder",
            "bnpl.change_agreement",
            "bnpl.decide_dispute",
        ),
    ),
)


@dataclass
class StaffGroupsReport:
    """What a sync did (or would do): groups created, and permissions added and removed per group."""

    created: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.added or self.removed)


class UnknownPermission(LookupError):
    """A declared permission does not exist: a typo, or a model renamed without updating STAFF_GROUPS."""


def _permissions(names: Iterable[str]) -> dict[str, Permission]:
    """``app_label.codename`` → Permission, in one query; raises UnknownPermission for any that is missing."""
    wanted = set(names)
    pairs = [name.split(".", 1) for name in wanted]
    condition = Q(pk__in=[])
    for app_label, codename in pairs:
        condition |= Q(content_type__app_label=app_label, codename=codename)
    found = {
        f"{p.content_type.app_label}.{p.codename}": p
        for p in Permission.objects.filter(condition).select_related("content_type")
    }
    missing = sorted(wanted - found.keys())
    if missing:
        raise UnknownPermission(f"Unknown permissions (run migrate first?): {', '.join(missing)}")
    return found


def staff_groups_sync(*, specs: Iterable[StaffGroupSpec] = STAFF_GROUPS, dry_run: bool = False) -> StaffGroupsReport:
    """Make each declared group's permissions exactly its declaration; idempotent, all or nothing.

    An advisory lock serialises two deploys running this at once (the second sees the first's result and
    changes nothing); a dry run computes the report and rolls back.
    """
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SYNC_LOCK_KEY])
        report = _sync(tuple(specs))
        if dry_run:
            transaction.set_rollback(True)
    return report


def _sync(specs: tuple[StaffGroupSpec, ...]) -> StaffGroupsReport:
    permissions = _permissions(p for spec in specs for p in spec.permissions)
    report = StaffGroupsReport()
    for spec in specs:
        group = Group.objects.filter(name=spec.name).first()
        if group is None:
            group = Group.objects.create(name=spec.name)
            report.created.append(spec.name)
        current = {
            f"{p.content_type.app_label}.{p.codename}": p for p in group.permissions.select_related("content_type")
        }
        wanted = set(spec.permissions)
        to_add = sorted(wanted - current.keys())
        to_remove = sorted(current.keys() - wanted)
        if to_add:
            group.permissions.add(*(permissions[name] for name in to_add))
            report.added[spec.name] = to_add
        if to_remove:
            group.permissions.remove(*(current[name] for name in to_remove))
            report.removed[spec.name] = to_remove
        if not (to_add or to_remove) and spec.name not in report.created:
            report.kept.append(spec.name)
    return report
