"""The merchant portal's pages that read or act on orders, charges, settlements and disputes (/merchant/…).

See ``merchants/portal/__init__.py`` for how the portal is split between the two packages and why.
Views here are thin: they read through selectors scoped to ``request.merchant`` and act through the same
services the API calls, turning a ``DomainError`` into a message that says why.
"""
