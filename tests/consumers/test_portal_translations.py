"""The consumer pages are complete in Chinese: rendered in zh-hans, no English sentence of the catalogue shows."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import trans_real

from bnpl.choices import OrderStatus
from bnpl.services import agreement_sign
from merchants.choices import ConfirmMode
from tests.bnpl.charging_helpers import due_order, fund
from tests.bnpl.helpers import order_in
from tests.consumers.portal_helpers import logged_in, place_from_catalogue
from tests.factories import ConsumerFactory, ListingFactory

pytestmark = pytest.mark.django_db
S = OrderStatus


def english_sentences() -> set[str]:
    """The catalogue's English msgids of three words or more (labels as short as "Bill" could be data)."""
    catalog = trans_real.translation("zh-hans")._catalog
    ids = set()
    # TranslationCatalog merges several catalogues and offers keys(), not plain iteration.
    keys = list(catalog.keys())
    for key in keys:
        msgid = key[0] if isinstance(key, tuple) else key
        if "\x04" in msgid:
            msgid = msgid.split("\x04", 1)[1]
        if msgid and "%" not in msgid and len(msgid.split()) >= 3:
            ids.add(msgid)
    return ids


def visible_text(body: bytes) -> str:
    text = body.decode()
    text = re.sub(r"<script.*?</script>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", html.unescape(text))


def test_every_consumer_page_is_in_chinese(settings, listing):
    settings.LANGUAGE_CODE = "zh-hans"
    consumer = ConsumerFactory()
    client = logged_in(consumer)
    fund(consumer, "3.00")
    pending = place_from_catalogue(client, listing)
    confirm_page = client.get(reverse("pay:confirm", args=[pending.confirmation_token]))
    client.post(reverse("pay:confirm", args=[pending.confirmation_token]), {"consent": "on"})
    due = due_order(listing, consumer, due_at=timezone.now() + timedelta(days=1))
    client.post(reverse("me:order_pay", args=[due.pk]))  # declined: insufficient funds
    agreement_listing = ListingFactory(confirm_mode=ConfirmMode.AGREEMENT)
    agreement = agreement_sign(actor=None, consumer=consumer, listing=agreement_listing)
    order_in(S.ACTIVE, listing=agreement_listing, consumer=consumer, agreement=agreement)
    refused = client.post(reverse("me:agreement_revoke", args=[agreement.pk]))
    pages = {
        "confirm": confirm_page,
        "anonymous confirm": Client().get(
            reverse("pay:confirm", args=[place_from_catalogue(client, listing).confirmation_token])
        ),
        "result": client.get(reverse("pay:result", args=[pending.pk])),
        "revoke refused": refused,
        "expired": Client().get(reverse("pay:confirm", args=["gone"])),
    }
    for name in (
        "shop:index",
        "me:home",
        "me:orders",
        "me:agreements",
        "me:score",
        "me:payment_methods",
        "me:settings",
        "me:verify",
    ):
        pages[name] = client.get(reverse(name))
    pages["listing"] = client.get(reverse("shop:listing", args=[listing.pk]))
    pages["order"] = client.get(reverse("me:order", args=[due.pk]))
    for name in ("me:order_report", "me:order_dispute", "me:order_extend"):
        pages[name] = client.get(reverse(name, args=[due.pk]))
    pages["login"] = Client().get(reverse("accounts:login"))
    pages["signup"] = Client().get(reverse("accounts:signup"))

    english = english_sentences()
    with translation.override("zh-hans"):
        for name, response in pages.items():
            assert response.status_code in (200, 404, 409), name
            text = visible_text(response.content)
            leaked = sorted(s for s in english if s in text)
            assert leaked == [], f"{name}: {leaked}"
            assert re.search(r"[\u4e00-\u9fff]", text), name
