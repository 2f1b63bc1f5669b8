"""Second factor of staff accounts (django-otp TOTP): enrolment and the demo helper, see docs/security.md."""

from __future__ import annotations

import time
from base64 import b32encode

from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from bnpl.exceptions import DomainError


class StaffOtpError(DomainError):
    code = "staff_otp_error"


@transaction.atomic
def totp_device_enrol(*, actor, user, name: str = "authenticator", replace: bool = False) -> TOTPDevice:
    """Give a staff user a confirmed TOTP device and return it (its ``config_url`` is the otpauth:// URI).

    With ``replace`` the user's other TOTP devices are deleted first (a lost phone). Without it an existing
    confirmed device is returned unchanged, so running the enrolment twice does not lock anybody out.
    """
    if not user.is_staff:
        raise StaffOtpError(_("Only staff accounts use the admin second factor."))
    devices = TOTPDevice.objects.select_for_update().filter(user=user)
    if replace:
        devices.delete()
    else:
        existing = devices.filter(confirmed=True).order_by("pk").first()
        if existing is not None:
            return existing
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)


def totp_secret_base32(device: TOTPDevice) -> str:
    """The shared secret as authenticator apps type it in (base32, no padding)."""
    return b32encode(device.bin_key).decode().rstrip("=")


def totp_current_token(device: TOTPDevice) -> str:
    """The token the device shows right now (for the DEBUG-only demo helper and tests)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"
