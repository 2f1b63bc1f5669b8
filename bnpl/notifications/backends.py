"""SMS backends: a pluggable class named by ``BNPL_SMS_BACKEND`` (email uses Django's own mail backends).

A provider adapter (Aliyun SMS, Tencent Cloud SMS…) is a subclass of :class:`BaseSmsBackend` whose ``send``
returns the provider's message id and raises on any failure; name its dotted path in the setting. The
platform ships a console backend (development: prints the message) and a local-memory one (tests).
"""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TextIO

from django.conf import settings
from django.utils.module_loading import import_string


class SmsSendError(Exception):
    """The provider refused or could not be reached; the delivery is retried."""


class BaseSmsBackend(ABC):
    """Send one text message to one mainland mobile number; return the provider's reference."""

    @abstractmethod
    def send(self, *, to: str, text: str) -> str:
        """Send ``text`` to ``to``; raise :class:`SmsSendError` when the provider refuses or cannot be reached."""


class ConsoleSmsBackend(BaseSmsBackend):
    """Development: writes the message to standard output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, *, to: str, text: str) -> str:
        self.stream.write(f"[SMS to {to}] {text}\n")
        self.stream.flush()
        return "console"


@dataclass(frozen=True)
class SentSms:
    to: str
    text: str


# Messages sent through LocmemSmsBackend, like django.core.mail.outbox (tests clear it).
outbox: list[SentSms] = []
_outbox_lock = threading.Lock()


class LocmemSmsBackend(BaseSmsBackend):
    """Tests: keeps the messages in :data:`outbox`."""

    def send(self, *, to: str, text: str) -> str:
        with _outbox_lock:
            outbox.append(SentSms(to=to, text=text))
            return f"locmem-{len(outbox)}"


def get_sms_backend() -> BaseSmsBackend:
    """An instance of the configured backend (``BNPL_SMS_BACKEND``)."""
    return import_string(settings.BNPL_SMS_BACKEND)()
