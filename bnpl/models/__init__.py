"""Models of the pay-later core, one module per area."""

from .gateway import SandboxCharge, SandboxFaultConfig, SandboxFundingSource, SandboxRefund
from .ledger import LedgerAccount, LedgerEntry, LedgerTransaction
from .orders import Agreement, BillLine, CreditOrder, OrderEvent, UsageEvent

__all__ = [
    "Agreement",
    "BillLine",
    "CreditOrder",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "OrderEvent",
    "SandboxCharge",
    "SandboxFaultConfig",
    "SandboxFundingSource",
    "SandboxRefund",
    "UsageEvent",
]
