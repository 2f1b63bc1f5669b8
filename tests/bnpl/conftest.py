"""Fixtures of the credit-order tests (arrangers live in ``tests.bnpl.helpers``)."""

import pytest

from merchants.choices import ConfirmMode
from tests.factories import ListingFactory, MerchantMemberFactory


@pytest.fixture
def merchant_user(merchant):
    return MerchantMemberFactory(merchant=merchant).user


@pytest.fixture
def agreement_listing(merchant):
    return ListingFactory(merchant=merchant, confirm_mode=ConfirmMode.AGREEMENT)
