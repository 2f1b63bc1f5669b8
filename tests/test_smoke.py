import pytest
from django.db import connection


@pytest.mark.django_db
def test_database_is_postgresql(consumer):
    assert connection.vendor == "postgresql"
    assert consumer.credit_profile.available_amount is not None
