"""The client's address and fixed-window counters for throttling sign-ups and other repeated attempts.

A leaf module (like ``bnpl.money``): merchants and consumers import it; it imports nothing from the project.

* :func:`client_ip` is django-axes' ``AXES_CLIENT_IP_CALLABLE``, so log-in lock-outs and the sign-up
  limiters see the same address. It reads ``AXES_IPWARE_META_PRECEDENCE_ORDER`` (the ``request.META`` keys
  to try, default ``REMOTE_ADDR`` only) and ``AXES_IPWARE_PROXY_COUNT`` (how many proxies of ours append
  to ``X-Forwarded-For``): behind one TLS proxy the client is the right-most entry, which the proxy wrote;
  whatever the client put further left is ignored. A forwarded header is read only with a proxy count, so
  without one nobody can pick their own address by sending the header.
* :func:`client_address` is that address through ``axes.helpers.get_client_ip_address`` ("unknown" if none).
* :func:`rate_hit` counts one attempt in a fixed window of the default cache and says whether the limit is
  passed; :func:`rate_count` reads a counter without counting (for "failed attempts" limits).
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """The client's IP address per the proxy settings; ``None`` when no configured header holds one."""
    proxy_count = int(getattr(settings, "AXES_IPWARE_PROXY_COUNT", None) or 0)
    order = getattr(settings, "AXES_IPWARE_META_PRECEDENCE_ORDER", None) or ("REMOTE_ADDR",)
    for key in order:
        raw = str(request.META.get(key, "") or "")
        if not raw:
            continue
        if key == "REMOTE_ADDR":
            address = _valid_ip(raw)
        else:
            if proxy_count <= 0:
                continue  # a header nobody of ours wrote is the client's own word
            entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
            address = _valid_ip(entries[-proxy_count]) if len(entries) >= proxy_count else None
        if address:
            return address
    return None


def client_address(request: HttpRequest) -> str:
    """The address the throttles count by: django-axes' view of the client (see :func:`client_ip`)."""
    from axes.helpers import get_client_ip_address  # imported late: axes.conf fills in settings on import

    return get_client_ip_address(request) or "unknown"


def rate_hit(key: str, *, limit: int, window_s: int) -> bool:
    """Count one attempt under ``key``; True once more than ``limit`` attempts fell in the window."""
    cache.add(key, 0, timeout=window_s)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_s)
        count = 1
    return count > limit


def rate_count(key: str) -> int:
    """How many attempts ``key`` has in its current window (0 when none)."""
    return int(cache.get(key) or 0)
