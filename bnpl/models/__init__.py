"""Models of the pay-later core, one module per area."""

from .audit import (
    CreditOrderAudit,
    CreditProfileAudit,
    DisputeAudit,
    MerchantAudit,
    PayoutAudit,
    RefundAudit,
    SettlementBatchAudit,
)
from .charging import ChargeAttempt, ChargeRun
from .gateway import SandboxCharge, SandboxFaultConfig, SandboxFundingSource, SandboxPayout, SandboxRefund
from .incentives import Campaign, CampaignProgress, Coupon
from .ledger import LedgerAccount, LedgerEntry, LedgerTransaction
from .order_stats import MerchantDayDelta, MerchantDayStats
from .orders import Agreement, BillLine, CreditOrder, OrderEvent, UsageEvent
from .settlement import (
    Dispute,
    DisputeEvent,
    DisputeEvidence,
    Payout,
    Refund,
    SettlementBatch,
    SettlementItem,
    UnsettledEntry,
)
from .signups import AgreementSignup

__all__ = [
    "Agreement",
    "AgreementSignup",
    "BillLine",
    "Campaign",
    "CampaignProgress",
    "ChargeAttempt",
    "ChargeRun",
    "Coupon",
    "CreditOrder",
    "CreditOrderAudit",
    "CreditProfileAudit",
    "Dispute",
    "DisputeAudit",
    "DisputeEvent",
    "DisputeEvidence",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "MerchantAudit",
    "MerchantDayDelta",
    "MerchantDayStats",
    "OrderEvent",
    "Payout",
    "PayoutAudit",
    "Refund",
    "RefundAudit",
    "SandboxCharge",
    "SandboxFaultConfig",
    "SandboxFundingSource",
    "SandboxPayout",
    "SandboxRefund",
    "SettlementBatch",
    "SettlementBatchAudit",
    "SettlementItem",
    "UnsettledEntry",
    "UsageEvent",
]
