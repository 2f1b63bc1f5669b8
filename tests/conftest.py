"""Suite-wide fixtures. The database is real PostgreSQL (DATABASE_URL or the embedded server)."""

import pytest

from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory


@pytest.fixture
def merchant(db):
    return MerchantFactory()


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant)


@pytest.fixture
def consumer(db):
    return ConsumerFactory()


@pytest.fixture
def staff_user(db):
    return UserFactory(username="staff", is_staff=True, is_superuser=True)
