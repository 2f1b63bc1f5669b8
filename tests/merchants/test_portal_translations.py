"""The merchant portal is complete in Chinese: its main pages in zh-hans show no English sentence of the catalogue."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from bnpl.disputes import dispute_open
from bnpl.models.settlement import DisputeReason
from bnpl.settlement import settle_merchants
from merchants.choices import MemberRole
from tests.bnpl.partb_helpers import charged_order
from tests.consumers.test_portal_translations import english_sentences, visible_text
from tests.factories import ConsumerFactory, ListingFactory, MerchantMemberFactory

pytestmark = pytest.mark.django_db


def test_every_main_merchant_page_is_in_chinese(settings):
    settings.LANGUAGE_CODE = "zh-hans"
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    merchant = owner.merchant
    listing = ListingFactory(merchant=merchant)
    consumer = ConsumerFactory()
    order = charged_order(listing, consumer, amount="5.00")
    disputed = charged_order(listing, ConsumerFactory(), amount="5.00")
    dispute = dispute_open(
        actor=None, consumer=disputed.consumer, order=disputed, reason=DisputeReason.FAULTY, description="充电桩坏了"
    )
    [batch_id] = settle_merchants(business_date=timezone.localdate())
    client = Client()
    client.force_login(owner.user)

    pages = {}
    for name in (
        "merchant:dashboard",
        "merchant:orders",
        "merchant:listings",
        "merchant:listing_create",
        "merchant:listing_import",
        "merchant:settlements",
        "merchant:disputes",
        "merchant:campaigns",
        "merchant:developer",
        "merchant:webhook_create",
        "merchant:team",
        "merchant:activity",
        "merchant:account",
    ):
        pages[name] = client.get(reverse(name))
    pages["order"] = client.get(reverse("merchant:order_detail", args=[order.pk]))
    pages["listing"] = client.get(reverse("merchant:listing", args=[listing.pk]))
    pages["listing edit"] = client.get(reverse("merchant:listing_edit", args=[listing.pk]))
    pages["settlement"] = client.get(reverse("merchant:settlement", args=[batch_id]))
    pages["dispute"] = client.get(reverse("merchant:dispute", args=[dispute.pk]))
    pages["login"] = Client().get(reverse("merchant:login"))
    pages["signup"] = Client().get(reverse("merchant:signup"))

    english = english_sentences()
    with translation.override("zh-hans"):
        for name, response in pages.items():
            assert response.status_code == 200, name
            text = visible_text(response.content)
            leaked = sorted(s for s in english if s in text)
            assert leaked == [], f"{name}: {leaked}"
