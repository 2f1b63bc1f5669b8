"""Models of the pay-later core, one module per area."""

from .charging import ChargeAttempt, ChargeRun
from .gateway import SandboxCharge, SandboxFaultConfig, SandboxFundingSource, SandboxRefund
from .ledger import LedgerAccount, LedgerEntry, LedgerTransaction
from .orders import Agreement, BillLine, CreditOrder, OrderEvent, UsageEvent
from .settlement import (
    Dispute,
    DisputeEvent,
    DisputeEvidence,
    Payout,
    Refund,
    SettlementBatch,
    SettlementItem,
)
from .signups import AgreementSignup

__all__ = [
    "Agreement",
    "AgreementSignup",
    "BillLine",
    "ChargeAttempt",
    "ChargeRun",
    "CreditOrder",
    "Dispute",
    "DisputeEvent",
    "DisputeEvidence",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "OrderEvent",
    "Payout",
    "Refund",
    "SandboxCharge",
    "SandboxFaultConfig",
    "SandboxFundingSource",
    "SandboxRefund",
    "SettlementBatch",
    "SettlementItem",
    "UsageEvent",
]
