"""Shared arrangers of the consumer-page tests (catalogue, hosted pay pages, my pay-later)."""

from __future__ import annotations

import re

from django.test import Client
from django.urls import reverse

from bnpl.models import CreditOrder

PASSWORD = "Xianxiang-2026"


def logged_in(consumer) -> Client:
    """A test client logged in as ``consumer`` (no password round trip)."""
    client = Client()
    client.force_login(consumer.user)
    return client


def nonce_of(page: bytes | str) -> str:
    """The "先享后付" button's nonce on a listing page."""
    text = page.decode() if isinstance(page, bytes) else page
    match = re.search(r'name="nonce" value="([0-9a-f]{16})"', text)
    assert match, "the listing page has no 先享后付 button"
    return match.group(1)


def place_from_catalogue(client: Client, listing) -> CreditOrder:
    """Press "先享后付" on the listing page; returns the pending order it placed."""
    page = client.get(reverse("shop:listing", args=[listing.pk]))
    response = client.post(reverse("shop:order", args=[listing.pk]), {"nonce": nonce_of(page.content)})
    assert response.status_code == 302
    order = CreditOrder.objects.filter(listing=listing).latest("id")
    assert response["Location"] == reverse("pay:confirm", args=[order.confirmation_token])
    return order
