"""Keep bearer tokens that travel in URL paths out of the logs and out of django-axes' tables.

Some paths carry a token (invitation links ``/merchant/join/<token>/``, the hosted confirmation page
``/pay/confirm/<token>``). Django logs the path of every 4xx/5xx response (``django.request``) and
django-axes stores the path of every login (``axes_accesslog``, ``axes_accessattempt``,
``axes_accessfailurelog``); both get the path with token-like segments replaced by ``…``
(:func:`bnpl.audit_middleware.redact_path`, the rule the audit trail uses). See docs/security.md.
"""

from __future__ import annotations

import logging
from typing import Any

AXES_MODELS = ("axes.AccessLog", "axes.AccessAttempt", "axes.AccessFailureLog")


def _redact(value: str) -> str:
    # Imported here: logging is configured before the app registry is ready.
    from bnpl.audit_middleware import redact_path

    return redact_path(value)


class RedactTokenPaths(logging.Filter):
    """A logger filter: rewrites the string arguments (the request path) of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = _redact(record.msg)
        return True


def redact_axes_path(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_save`` of django-axes' records: store the login path without its token."""
    path_info = getattr(instance, "path_info", None)
    if path_info:
        instance.path_info = _redact(path_info)


def connect() -> None:
    from django.db.models.signals import pre_save

    for model in AXES_MODELS:
        pre_save.connect(redact_axes_path, sender=model, dispatch_uid=f"bnpl.redact_axes_path.{model}")
