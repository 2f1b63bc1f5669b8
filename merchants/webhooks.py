"""The machinery under merchant webhooks: secrets, signatures, safe targets and the HTTP call.

Nothing here touches the database; the services in :mod:`merchants.services` own the outbox and
the retry state and call these helpers.

* **Secrets** are Standard Webhooks secrets (``whsec_`` + base64 of 24 random bytes). The signer
  needs the secret itself, so it cannot be hashed like an API key; it is stored encrypted with
  Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key derived from
  ``BNPL_WEBHOOK_SECRET_KEY`` (default: ``SECRET_KEY``). A database dump alone does not reveal it.
* **Signatures** come from the ``standardwebhooks`` package — the same code a merchant verifies with —
  over ``<webhook-id>.<timestamp>.<body>``.
* **Targets** on private, loopback, link-local or otherwise non-public addresses are refused (a
  webhook URL must not become a way to reach the platform's own network) unless
  ``BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS`` is set for local development. The address is resolved once,
  checked, and the connection goes to that very address, so a DNS answer that changes between check
  and connect (DNS rebinding) cannot slip through. Redirects are never followed.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import secrets
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
#: Delay before each attempt, counted from the previous failure (the first from the event):
#: WeChat Pay Score's callback schedule, 0 s, 15 s, 15 s, 30 s, 3 min, 30 min ×4, 1 h — ten attempts.
RETRY_DELAYS_S: tuple[int, ...] = (0, 15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600)
MAX_ATTEMPTS = len(RETRY_DELAYS_S)
RESPONSE_EXCERPT = 500
USER_AGENT = "bnpl-webhooks/1"


class UnsafeTarget(ValueError):
    """A webhook URL that is malformed or points at an address the platform will not call."""


def generate_secret() -> str:
    """A new Standard Webhooks signing secret, ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """What the admin may show of a secret after creation: its prefix and last four characters."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def _fernet_key(material: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(f"bnpl.webhook-secret:{material}".encode()).digest())


def _fernet() -> MultiFernet:
    # The current key encrypts; SECRET_KEY_FALLBACKS still decrypt after SECRET_KEY is rotated.
    current = getattr(settings, "BNPL_WEBHOOK_SECRET_KEY", "") or settings.SECRET_KEY
    keys = [current, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # the key changed without a fallback: the endpoint needs a new secret
        raise ValueError("the webhook secret cannot be decrypted with the configured keys") from exc


def sign(*, secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    timestamp = timestamp.astimezone(UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


@dataclass(frozen=True)
class Target:
    """A checked webhook target: connect to ``ip`` while speaking to ``host``."""

    scheme: str
    host: str
    port: int
    ip: str
    path: str


def _allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool | None = None) -> Target:
    """Parse and resolve a webhook URL; raise :class:`UnsafeTarget` unless every address is public.

    All addresses the name resolves to must be allowed (an attacker controlling a name could put a
    private address second); the first is the one connected to.
    """
    if allow_private is None:
        allow_private = bool(getattr(settings, "BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS", False))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget("the URL cannot be parsed") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("the URL must be http:// or https:// with a host name")
    if parts.username or parts.password:
        raise UnsafeTarget("the URL must not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget("the host name does not resolve") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnsafeTarget("the host name does not resolve")
    if not allow_private:
        for address in addresses:
            if not _allowed(ipaddress.ip_address(address.split("%", 1)[0])):
                raise UnsafeTarget(f"the address {address} is private, loopback or link-local")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, ip=addresses[0], path=path)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._ip = target.ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._ip = target.ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        # Certificate and SNI are checked against the host name, not the pinned address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class PostResult:
    status: int | None
    excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(target: Target, *, body: str, headers: dict[str, str], timeout: float) -> PostResult:
    """POST ``body`` to the checked target; never raises for network trouble (it is a failed attempt)."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    conn = cls(target, timeout)
    try:
        conn.request(
            "POST",
            target.path,
            body=body.encode(),
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = conn.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT).decode(errors="replace")
        return PostResult(status=response.status, excerpt=excerpt, error="")
    except (OSError, http.client.HTTPException) as exc:
        return PostResult(status=None, excerpt="", error=f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT])
    finally:
        conn.close()
