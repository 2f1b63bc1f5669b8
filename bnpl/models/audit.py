"""Audit trail of changes to money, limits, merchants and disputes (django-pghistory), docs/security.md.

Every event model of the platform is declared here, in the ``bnpl`` app, so the history tables come from
one migration. PostgreSQL triggers on the tracked tables write a row here for each insert, for each update
that changes a tracked field, and for each delete – whatever made the change: a service, the admin, a
``QuerySet.update()`` or raw SQL. Web requests that write (POST/PUT/PATCH/DELETE) run inside a
``pghistory.context`` opened by ``bnpl.audit_middleware.AuditContextMiddleware``, so their rows carry the acting
user's id and the URL; writes of background jobs have no context. The rows are append-only (a trigger
refuses UPDATE and DELETE) and the admin shows them read-only (Admin › Pghistory › Middleware events, before and
after as ``pgh_diff``).

Only fields a person could change on purpose are tracked, and an update that changes none of them (the
charge run counting attempts, exposure moving with orders) writes nothing.
"""

from __future__ import annotations

import pghistory
import pgtrigger
from django.utils.translation import gettext_lazy as _

from consumers.models import CreditProfile
from merchants.models import Merchant

from .orders import CreditOrder
from .settlement import Dispute, Payout, Refund, SettlementBatch


def _trackers() -> tuple:
    return (
        pghistory.InsertEvent(trigger_name="audit_insert"),
        pghistory.UpdateEvent(trigger_name="audit_update"),
        pghistory.DeleteEvent(trigger_name="audit_delete"),
    )


def _audit_model(tracked, model_name: str, fields: list[str], verbose_name):
    return pghistory.create_event_model(
        tracked,
        *_trackers(),
        fields=fields,
        model_name=model_name,
        app_label="bnpl",
        append_only=True,
        abstract=False,
        # One INSERT … SELECT per statement (transition tables) instead of one per row: a bulk update of
        # thousands of orders costs one statement, not thousands of trigger calls.
        level=pgtrigger.Statement,
        meta={"verbose_name": verbose_name, "verbose_name_plural": verbose_name},
    )


MerchantAudit = _audit_model(
    Merchant,
    "MerchantAudit",
    [
        "status",
        "legal_name",
        "uscc",
        "fee_rate",
        "settlement_bank_name",
        "settlement_account_name",
        "settlement_account_number",
        "rejection_reason",
    ],
    _("Audit: merchants"),
)
CreditProfileAudit = _audit_model(
    CreditProfile,
    "CreditProfileAudit",
    ["score", "credit_limit_amount", "spend_cap_amount", "is_paused", "paused_reason"],
    _("Audit: credit profiles"),
)
CreditOrderAudit = _audit_model(
    CreditOrder,
    "CreditOrderAudit",
    ["status", "amount_due", "late_fee_amount", "refunded_amount", "charge_paused", "close_reason"],
    _("Audit: credit orders"),
)
DisputeAudit = _audit_model(
    Dispute,
    "DisputeAudit",
    ["status", "outcome", "disputed_amount", "decided_by", "decision_reason"],
    _("Audit: disputes"),
)
RefundAudit = _audit_model(Refund, "RefundAudit", ["status", "amount", "reason", "dispute"], _("Audit: refunds"))
SettlementBatchAudit = _audit_model(
    SettlementBatch,
    "SettlementBatchAudit",
    ["gross_amount", "fee_amount", "refund_amount", "adjustment_amount", "held_amount", "net_amount"],
    _("Audit: settlement batches"),
)
PayoutAudit = _audit_model(Payout, "PayoutAudit", ["status", "amount", "reference", "paid_by"], _("Audit: payouts"))


AUDIT_MODELS = (
    MerchantAudit,
    CreditProfileAudit,
    CreditOrderAudit,
    DisputeAudit,
    RefundAudit,
    SettlementBatchAudit,
    PayoutAudit,
)
