"""Suite-wide fixtures. The database is real PostgreSQL (DATABASE_URL or the embedded server)."""

import pytest
from django.utils import translation

from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, UserFactory


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Every consumer and merchant member has a login; PBKDF2 would cost most of a test's time, and hashing
    # strength is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Pages render {% static %} without a collectstatic manifest (production uses the manifest storage).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The admin's second factor (bnpl/admin_site.py) is tested in tests/security/test_admin_otp.py, which
    # turns it back on; elsewhere force_login'd staff reach the admin with their password session alone.
    settings.BNPL_ADMIN_REQUIRE_OTP = False


@pytest.fixture(autouse=True)
def _english(settings):
    """Messages are asserted as their English msgids; translation tests activate zh-hans themselves.

    The default language is switched too, because requests through the test client (LocaleMiddleware)
    and threads of the concurrency tests start from LANGUAGE_CODE, not from the caller's activation.
    """
    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


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
