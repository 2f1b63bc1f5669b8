"""``bnpl.sql_rows``: the order path's rows written and read as ``save()`` and the ORM would."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from bnpl import sql_rows
from bnpl.choices import ActorKind, OrderStatus
from bnpl.models import CreditOrder, OrderEvent
from consumers.models import CreditProfile
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory

pytestmark = pytest.mark.django_db


def test_insert_prepares_fields_as_save_does():
    order = order_in(OrderStatus.ACTIVE, listing=ListingFactory(), consumer=ConsumerFactory())
    before = timezone.now()
    event = OrderEvent(order=order, actor_kind=ActorKind.MERCHANT, to_status="active", data={"decision_id": 5})

    sql_rows.insert(event)

    assert event.pk is not None and not event._state.adding
    stored = OrderEvent.objects.get(pk=event.pk)
    assert stored.created_at == event.created_at and event.created_at >= before  # auto_now_add, on both
    assert (stored.order_id, stored.data, stored.reason) == (order.pk, {"decision_id": 5}, "")


def test_update_writes_only_the_fields_named_and_auto_now():
    order = order_in(OrderStatus.ACTIVE, listing=ListingFactory(), consumer=ConsumerFactory())
    title, stale_updated_at = order.title, order.updated_at
    order.close_reason = "written"
    order.title = "not written"

    sql_rows.update(order, ["close_reason", "updated_at"])

    stored = CreditOrder.objects.get(pk=order.pk)
    assert (stored.close_reason, stored.title) == ("written", title)
    assert stored.updated_at == order.updated_at > stale_updated_at


def test_update_of_a_row_that_is_gone_raises_unless_allowed():
    order = order_in(OrderStatus.ACTIVE, listing=ListingFactory(), consumer=ConsumerFactory())
    ghost = CreditOrder(pk=order.pk + 10_000, close_reason="x")

    with pytest.raises(CreditOrder.NotUpdated):
        sql_rows.update(ghost, ["close_reason"])
    sql_rows.update(ghost, ["close_reason"], missing_ok=True)


def test_instance_is_what_the_orm_returns():
    order = order_in(OrderStatus.ACTIVE, listing=ListingFactory(), consumer=ConsumerFactory())
    sql = f"SELECT {sql_rows.columns(CreditOrder, 'o')} FROM bnpl_creditorder o WHERE o.id = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [order.pk])
        built = sql_rows.instance(CreditOrder, cursor.fetchone())

    loaded = CreditOrder.objects.get(pk=order.pk)
    fields = [field.attname for field in CreditOrder._meta.concrete_fields]
    assert {name: getattr(built, name) for name in fields} == {name: getattr(loaded, name) for name in fields}
    assert isinstance(built.pricing_rule, dict)  # JSON decoded as the ORM decodes it


def test_models_with_fields_the_database_computes_are_refused():
    consumer = ConsumerFactory()
    # CreditProfile's band and available amount are GeneratedFields: save() reads them back, insert() cannot.
    with pytest.raises(TypeError):
        sql_rows.insert(CreditProfile(consumer=consumer))


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        return [row[0] for row in cursor.fetchall()]


def test_fetch_prepared_prepares_its_statement_once_and_nothing_else():
    profile = CreditProfile.objects.get(consumer=ConsumerFactory())
    sql = "SELECT score FROM consumers_creditprofile WHERE id = %s"

    rows = [sql_rows.fetch_prepared(sql, [profile.pk]) for _n in range(3)]
    for _n in range(6):  # the ORM's statements, again and again: never prepared
        CreditProfile.objects.filter(pk=profile.pk).values_list("score", flat=True).get()

    assert rows == [(profile.score,)] * 3
    assert prepared_statements() == ["SELECT score FROM consumers_creditprofile WHERE id = $1"]
    assert connection.connection.prepare_threshold is None  # as Django opened it


def test_fetch_prepared_raises_djangos_errors_and_keeps_the_transaction():
    profile = CreditProfile.objects.get(consumer=ConsumerFactory())

    with pytest.raises(IntegrityError), transaction.atomic():
        sql_rows.fetch_prepared(
            "INSERT INTO consumers_creditprofile (consumer_id, score, credit_limit_amount, open_exposure_amount, "
            "is_paused, paused_reason, updated_at) SELECT consumer_id, 1, 0, 0, false, '', now() "
            "FROM consumers_creditprofile WHERE id = %s RETURNING id",
            [profile.pk],
        )

    assert connection.connection.prepare_threshold is None
    assert CreditProfile.objects.get(pk=profile.pk).score == profile.score  # the transaction is still usable
