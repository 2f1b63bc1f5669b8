"""Enrol a staff user's TOTP device for the admin (the first device cannot be added through the admin)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from bnpl.exceptions import DomainError
from bnpl.staff_otp import totp_current_token, totp_device_enrol, totp_secret_base32


class Command(BaseCommand):
    help = (
        "enrol USER: give a staff user a TOTP device and print its otpauth:// URI and secret (--replace: new "
        "secret, old devices deleted). code USER: print the current token (DJANGO_DEBUG=1 only, for the demo)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["enrol", "code"])
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true", help="Delete the user's TOTP devices first.")
        parser.add_argument("--name", default="authenticator", help="Device name shown at login.")

    def handle(self, *args, action: str, username: str, replace: bool, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if action == "code":
            if not settings.DEBUG:
                raise CommandError("staff_totp code only runs with DJANGO_DEBUG=1 (a demo convenience).")
            device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
            if device is None:
                raise CommandError(f"{username} has no TOTP device: run `manage.py staff_totp enrol {username}`.")
            self.stdout.write(totp_current_token(device))
            return
        try:
            device = totp_device_enrol(actor=None, user=user, name=name, replace=replace)
        except DomainError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"TOTP device {device.name!r} of {username}. Add it to an authenticator app:")
        self.stdout.write(f"  URI:    {device.config_url}")
        self.stdout.write(f"  secret: {totp_secret_base32(device)}")
