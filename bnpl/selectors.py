"""Reads of the pay-later core, always scoped to the principal asking (invariant 5).

A merchant sees only its own orders and a consumer only their own: every lookup by
an id that came from a request filters by the principal, so another tenant's id
raises ``DoesNotExist`` exactly like an id that does not exist (views turn it into
404 and learn nothing about other tenants).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from consumers.models import Consumer
from merchants.models import Merchant

from .choices import OrderStatus
from .models import Agreement, AgreementSignup, CreditOrder


def _orders() -> QuerySet[CreditOrder]:
    return CreditOrder.objects.select_related("merchant", "listing", "consumer")


def _pk(value: object) -> int:
    """A primary key from request input; anything else is an id that does not exist."""
    try:
        pk = int(str(value))
    except (TypeError, ValueError):
        raise CreditOrder.DoesNotExist from None
    # Beyond a bigint is no id either (and would otherwise reach the database as an error).
    if pk <= 0 or pk >= 2**63:
        raise CreditOrder.DoesNotExist
    return pk


def credit_order_get_for_merchant(*, merchant: Merchant, order_id: int | str) -> CreditOrder:
    """One of ``merchant``'s orders by platform id."""
    return _orders().get(merchant=merchant, pk=_pk(order_id))


def credit_order_get_by_out_order_no(*, merchant: Merchant, out_order_no: str) -> CreditOrder:
    """One of ``merchant``'s orders by the merchant's own order number."""
    return _orders().get(merchant=merchant, out_order_no=out_order_no)


def credit_order_get_for_consumer(*, consumer: Consumer, order_id: int | str) -> CreditOrder:
    """One of ``consumer``'s orders by platform id."""
    return _orders().get(consumer=consumer, pk=_pk(order_id))


def credit_order_get_by_token(*, token: str) -> CreditOrder:
    """The pending order a confirmation link points at.

    The token is the only secret of the hosted confirmation page, so it is matched
    exactly and only while the order awaits confirmation (it is cleared afterwards).
    """
    if not token:
        raise CreditOrder.DoesNotExist
    return _orders().get(confirmation_token=token, status=OrderStatus.PENDING_CONFIRMATION)


def credit_orders_for_merchant(*, merchant: Merchant) -> QuerySet[CreditOrder]:
    """All of ``merchant``'s orders, newest first."""
    return _orders().filter(merchant=merchant)


def credit_orders_for_consumer(*, consumer: Consumer) -> QuerySet[CreditOrder]:
    """All of ``consumer``'s orders, newest first (the consumer's one place for every order)."""
    return _orders().filter(consumer=consumer)


def agreement_get_for_consumer(*, consumer: Consumer, agreement_id: int | str) -> Agreement:
    """One of ``consumer``'s agreements by id."""
    try:
        pk = _pk(agreement_id)
    except CreditOrder.DoesNotExist:
        raise Agreement.DoesNotExist from None
    return Agreement.objects.select_related("merchant", "listing").get(consumer=consumer, pk=pk)


# --------------------------------------------------------------------------- merchant API


def agreements_for_merchant(*, merchant: Merchant) -> QuerySet[Agreement]:
    """All of ``merchant``'s standing agreements, newest first."""
    return Agreement.objects.select_related("consumer").filter(merchant=merchant).order_by("-signed_at", "-id")


def agreement_get_for_merchant(*, merchant: Merchant, agreement_id: int | str) -> Agreement:
    """One of ``merchant``'s agreements by id; ``Agreement.DoesNotExist`` for anyone else's."""
    try:
        pk = _pk(agreement_id)
    except CreditOrder.DoesNotExist:
        raise Agreement.DoesNotExist from None
    return agreements_for_merchant(merchant=merchant).get(pk=pk)


def agreement_signup_get_for_merchant(*, merchant: Merchant, signup_id: int | str) -> AgreementSignup:
    """One of ``merchant``'s sign-up links by id; ``AgreementSignup.DoesNotExist`` for anyone else's."""
    try:
        pk = _pk(signup_id)
    except CreditOrder.DoesNotExist:
        raise AgreementSignup.DoesNotExist from None
    return AgreementSignup.objects.select_related("consumer").get(merchant=merchant, pk=pk)


@dataclass(frozen=True)
class NamedConsumer:
    """A consumer an API request names, as :func:`consumer_named_by_merchant` finds them."""

    #: Only ``id`` and ``is_sandbox`` are loaded; any other field is read from the database on first access.
    consumer: Consumer
    #: The consumer has an order or an agreement (any status) with the merchant.
    known: bool

    def nameable(self, *, sandbox: bool) -> bool:
        """May a key of this mode name the consumer? Test keys: any sandbox consumer (test identities are
        shared fixtures). Live keys: a real consumer who already has an order or an agreement with the
        merchant, so a merchant cannot probe for other people's accounts by id."""
        return self.consumer.is_sandbox == sandbox and (sandbox or self.known)


@functools.cache
def _named_consumer_sql() -> str:
    consumer, agreement, order = Consumer._meta, Agreement._meta, CreditOrder._meta
    # Identifiers come from the models' metadata; the values are bound parameters.
    return (
        f'SELECT c."id", c."is_sandbox", '  # noqa: S608
        f'EXISTS (SELECT 1 FROM "{agreement.db_table}" a WHERE a."merchant_id" = %s AND a."consumer_id" = c."id") '
        f'OR EXISTS (SELECT 1 FROM "{order.db_table}" o WHERE o."merchant_id" = %s AND o."consumer_id" = c."id") '
        f'FROM "{consumer.db_table}" c WHERE c."id" = %s'
    )


def consumer_named_by_merchant(*, merchant: Merchant, consumer_id: int | str) -> NamedConsumer | None:
    """The consumer an API request names, their mode and whether the merchant knows them; None if no such id.

    The caller decides with :meth:`NamedConsumer.nameable` (and answers a mode mismatch apart from
    an unknown id). One hand-written statement: the API's order creation names a consumer on every
    request, and the ORM's compilation of the two ``EXISTS`` cost more than running them.
    """
    try:
        pk = _pk(consumer_id)
    except CreditOrder.DoesNotExist:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_named_consumer_sql(), [merchant.pk, merchant.pk, pk])
        row = cursor.fetchone()
    if row is None:
        return None
    consumer = Consumer.from_db(connection.alias, ["id", "is_sandbox"], row[:2])
    return NamedConsumer(consumer=consumer, known=bool(row[2]))
