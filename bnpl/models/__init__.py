"""Models of the pay-later core, one module per area."""

from .orders import Agreement, BillLine, CreditOrder, OrderEvent, UsageEvent

__all__ = ["Agreement", "BillLine", "CreditOrder", "OrderEvent", "UsageEvent"]
