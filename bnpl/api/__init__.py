"""The merchant REST API (``/api/v1/``): API-key authentication, idempotent POSTs, one error format.

See docs/api.md for the integration guide and ``/api/docs/`` for the OpenAPI reference.
"""
