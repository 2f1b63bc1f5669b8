"""Request and response shapes of the merchant API.

Input serializers only check shapes and types (strictly: an unknown field is refused, amounts are
decimal strings with at most two places, times carry their UTC offset); the rules live in the
services, which validate again. Output serializers are explicit so that the OpenAPI document says
exactly what a merchant receives: amounts as ``"12.50"``, times as ISO 8601 with offset
(``2026-11-25T20:15:00+08:00``).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bnpl.choices import AgreementSignupStatus, AgreementStatus, OrderStatus
from bnpl.money import MoneyError, parse_money
from merchants.choices import ConfirmMode, ListingStatus, Scenario

from .errors import UnknownField

MAX_ID = 2**63 - 1
AMOUNT_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
QUANTITY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,4})?$"
EXPIRED = "expired"
AMOUNT_RE = re.compile(AMOUNT_PATTERN)
QUANTITY_RE = re.compile(QUANTITY_PATTERN)


# --------------------------------------------------------------------------- fields


@extend_schema_field({"type": "string", "pattern": AMOUNT_PATTERN, "example": "12.50"})
class MoneyField(serializers.Field):
    """CNY as a decimal string with at most two places (``"12.50"``); numbers are refused."""

    default_error_messages = {
        "invalid": _('Give the amount as a decimal string with at most two decimal places, such as "12.50".'),
        "zero": _("The amount must be greater than zero."),
    }

    def __init__(self, *, allow_zero: bool = True, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        # The documented pattern, not just anything Decimal parses ("1e3", " 5", "+5" are refused).
        if not isinstance(data, str) or not AMOUNT_RE.fullmatch(data):
            self.fail("invalid")
        try:
            amount = parse_money(data, allow_zero=True)
        except MoneyError:
            self.fail("invalid")
        if amount == 0 and not self.allow_zero:
            self.fail("zero")
        return amount

    def to_representation(self, value: Decimal) -> str:
        return f"{value:.2f}"


@extend_schema_field({"type": "string", "pattern": QUANTITY_PATTERN, "example": "1.5"})
class QuantityField(serializers.Field):
    """A usage or bill quantity: a decimal string (or a whole number) ≥ 0 with at most four places."""

    default_error_messages = {
        "invalid": _('Give the quantity as a decimal string with at most four decimal places, such as "1.5".'),
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        # Negative and malformed quantities are left to the services' own message (they name the rule).
        return str(data)

    def to_representation(self, value: Decimal) -> str:
        normalized = value.normalize()
        return f"{normalized:f}"


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with its UTC offset; a time without one is ambiguous and refused."""

    default_error_messages = {
        "naive": _("Give the time in ISO 8601 with its UTC offset, e.g. 2026-11-25T20:15:00+08:00."),
    }

    def to_internal_value(self, value: Any) -> datetime:
        if not isinstance(value, str):
            self.fail("naive")
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is None or timezone.is_naive(parsed):
            self.fail("naive")
        return parsed

    def to_representation(self, value: datetime | None) -> str | None:
        return timezone.localtime(value).isoformat() if value is not None else None


class IdField(serializers.IntegerField):
    def __init__(self, **kwargs: Any):
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


# --------------------------------------------------------------------------- strict input


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (``unknown_field``) instead of silently ignoring a typo."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                prefix = self._path()
                fields = {f"{prefix}{name}": str(_("Unknown field.")) for name in unknown}
                raise UnknownField(_("Unknown field(s): %(names)s.") % {"names": ", ".join(unknown)}, fields=fields)
        return super().to_internal_value(data)

    def _path(self) -> str:
        parts: list[str] = []
        node: Any = self
        while node is not None and node.parent is not None:
            if isinstance(node.parent, serializers.ListSerializer):
                parts.append(f"{node.parent.field_name}[]")
                node = node.parent.parent
            else:
                parts.append(node.field_name)
                node = node.parent
        return "".join(f"{part}." for part in reversed(parts) if part)


class OrderCreateIn(StrictSerializer):
    listing_id = IdField(help_text="The listing (service) the order is for.")
    out_order_no = serializers.CharField(max_length=64, help_text="Your order number, unique per merchant.")
    consumer_id = IdField(
        required=False,
        help_text="Required under a standing agreement, and with test keys (a sandbox consumer). "
        "Optional for confirm-each-time orders: whoever confirms the link becomes the consumer.",
    )
    max_amount = MoneyField(
        required=False, allow_zero=False, help_text="The most that may be charged; defaults to the listing's ceiling."
    )
    title = serializers.CharField(required=False, allow_blank=True, max_length=120)


class UsageIn(StrictSerializer):
    merchant_event_id = serializers.CharField(max_length=64, help_text="Your id of this report (idempotent).")
    quantity = QuantityField(help_text="Units used (hours, kWh, kg, visits) as the listing's pricing rule counts them.")
    occurred_at = AwareDateTimeField()
    properties = serializers.DictField(required=False, help_text="Free-form attributes the pricing rule may read.")


class UsageBatchEventIn(UsageIn):
    order_id = IdField(required=False)
    out_order_no = serializers.CharField(required=False, max_length=64)


class UsageBatchIn(StrictSerializer):
    events = UsageBatchEventIn(many=True, min_length=1, max_length=1000)


class BillLineIn(StrictSerializer):
    name = serializers.CharField(max_length=64, help_text="首重费, 续重费, 包装费, 保价费, 使用时长, …")
    quantity = QuantityField(required=False, help_text="Defaults to 1.")
    unit = serializers.CharField(required=False, allow_blank=True, max_length=16)
    unit_price = QuantityField(required=False, help_text="Defaults to the amount (a quantity of 1).")
    amount = MoneyField(help_text="quantity × unit_price, to the fen.")


class DiscountIn(StrictSerializer):
    name = serializers.CharField(max_length=64)
    amount = MoneyField(allow_zero=False)


class CompleteIn(StrictSerializer):
    lines = BillLineIn(
        many=True,
        required=False,
        max_length=100,
        help_text="Your final bill. Leave it out to rate the reported usage under the order's pricing rule.",
    )
    discounts = DiscountIn(many=True, required=False, max_length=20)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ReasonIn(StrictSerializer):
    reason = serializers.CharField(max_length=200)


class OptionalReasonIn(StrictSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200)


class AgreementSignupIn(StrictSerializer):
    listing_id = IdField(help_text="An agreement-mode listing.")
    out_agreement_no = serializers.CharField(max_length=64, help_text="Your reference, unique per merchant.")
    consumer_id = IdField(required=False, help_text="Only this consumer may sign through the link (optional).")


class ListingIn(StrictSerializer):
    title = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    scenario = serializers.ChoiceField(choices=Scenario.choices)
    confirm_mode = serializers.ChoiceField(choices=ConfirmMode.choices, required=False)
    max_amount = MoneyField(allow_zero=False, help_text="Per-order ceiling.")
    pricing_rule = serializers.DictField(help_text="A pricing rule (see docs/api.md, 'Pricing rules').")
    min_score = serializers.IntegerField(required=False, min_value=350, max_value=950)
    order_ttl_minutes = serializers.IntegerField(required=False, min_value=1, max_value=60 * 24 * 30)


# --------------------------------------------------------------------------- output


class DecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.CharField(help_text="approved or declined")
    reasons = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))


class BillLineOut(serializers.Serializer):
    name = serializers.CharField()
    quantity = QuantityField()
    unit = serializers.CharField()
    unit_price = QuantityField()
    amount = MoneyField()
    is_discount = serializers.BooleanField()


class OrderOut(serializers.Serializer):
    id = serializers.IntegerField()
    out_order_no = serializers.CharField()
    status = serializers.ChoiceField(choices=OrderStatus.choices)
    livemode = serializers.SerializerMethodField()
    listing_id = serializers.IntegerField()
    consumer_id = serializers.IntegerField(allow_null=True)
    agreement_id = serializers.IntegerField(allow_null=True)
    title = serializers.CharField()
    scenario = serializers.ChoiceField(choices=Scenario.choices)
    confirm_mode = serializers.ChoiceField(choices=ConfirmMode.choices)
    max_amount = MoneyField()
    amount_due = MoneyField(allow_null=True)
    confirmation_url = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()
    bill_lines = BillLineOut(many=True)
    expires_at = AwareDateTimeField(allow_null=True)
    confirmed_at = AwareDateTimeField(allow_null=True)
    completed_at = AwareDateTimeField(allow_null=True)
    due_at = AwareDateTimeField(allow_null=True)
    closed_at = AwareDateTimeField(allow_null=True)
    close_reason = serializers.CharField()
    created_at = AwareDateTimeField()
    updated_at = AwareDateTimeField()

    def get_livemode(self, order: Any) -> bool:
        return order.consumer is None or not order.consumer.is_sandbox

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_confirmation_url(self, order: Any) -> str | None:
        if order.status != OrderStatus.PENDING_CONFIRMATION or not order.confirmation_token:
            return None
        return f"{settings.SITE_URL.rstrip('/')}/pay/confirm/{order.confirmation_token}"

    @extend_schema_field(DecisionOut(allow_null=True))
    def get_decision(self, order: Any) -> dict[str, Any] | None:
        decision = order.decision
        if decision is None:
            return None
        return {"id": decision.pk, "outcome": decision.outcome, "reasons": list(decision.reasons or [])}


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else timezone.localtime(value).isoformat()


def _jsonb_key_order(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with its keys in the order PostgreSQL's ``jsonb`` gives them back (shorter first, then bytewise).

    A decision's reasons are dicts built in Python; read back from the database they come in jsonb's
    order. Putting them in that order here makes the body built from the objects in hand byte-identical
    to the one built from the stored rows (a later ``GET`` of the order, a replay).
    """
    return {key: item[key] for key in sorted(item, key=lambda key: (len(key.encode()), key.encode()))}


def order_data(order: Any, *, livemode: bool | None = None, bill_lines: Any = None) -> dict[str, Any]:
    """What ``OrderOut(order).data`` gives, built directly; ``OrderOut`` stays the OpenAPI document's shape.

    DRF binds (deep-copies) the serializer's 23 fields and runs each one's machinery for every order it
    renders; for a single order that cost more than building the dict (docs/performance.md, "HTTP load").
    ``tests/api/test_order_body.py`` holds the two to the same output for every state of an order.

    ``livemode`` (when the caller knows the consumer's mode) saves reading ``order.consumer``;
    ``bill_lines`` (when the caller knows them, e.g. none on a new order) saves reading them.
    """
    if livemode is None:
        consumer = order.consumer
        livemode = consumer is None or not consumer.is_sandbox
    if bill_lines is None:
        bill_lines = order.bill_lines.all()
    decision = order.decision
    confirmation_url = None
    if order.status == OrderStatus.PENDING_CONFIRMATION and order.confirmation_token:
        confirmation_url = f"{settings.SITE_URL.rstrip('/')}/pay/confirm/{order.confirmation_token}"
    return {
        "id": order.pk,
        "out_order_no": order.out_order_no,
        "status": str(order.status),
        "livemode": livemode,
        "listing_id": order.listing_id,
        "consumer_id": order.consumer_id,
        "agreement_id": order.agreement_id,
        "title": order.title,
        "scenario": str(order.scenario),
        "confirm_mode": str(order.confirm_mode),
        "max_amount": _money(order.max_amount),
        "amount_due": _money(order.amount_due),
        "confirmation_url": confirmation_url,
        "decision": None
        if decision is None
        else {
            "id": decision.pk,
            "outcome": str(decision.outcome),
            "reasons": [_jsonb_key_order(reason) for reason in decision.reasons or []],
        },
        "bill_lines": [
            {
                "name": line.name,
                "quantity": f"{line.quantity.normalize():f}",
                "unit": line.unit,
                "unit_price": f"{line.unit_price.normalize():f}",
                "amount": _money(line.amount),
                "is_discount": line.is_discount,
            }
            for line in bill_lines
        ],
        "expires_at": _time(order.expires_at),
        "confirmed_at": _time(order.confirmed_at),
        "completed_at": _time(order.completed_at),
        "due_at": _time(order.due_at),
        "closed_at": _time(order.closed_at),
        "close_reason": order.close_reason,
        "created_at": _time(order.created_at),
        "updated_at": _time(order.updated_at),
    }


class AgreementOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=AgreementStatus.choices)
    livemode = serializers.SerializerMethodField()
    listing_id = serializers.IntegerField()
    consumer_id = serializers.IntegerField()
    signed_at = AwareDateTimeField()
    closed_at = AwareDateTimeField(allow_null=True)
    close_reason = serializers.CharField()

    def get_livemode(self, agreement: Any) -> bool:
        return not agreement.consumer.is_sandbox


class AgreementSignupOut(serializers.Serializer):
    id = serializers.IntegerField()
    out_agreement_no = serializers.CharField()
    status = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    listing_id = serializers.IntegerField()
    consumer_id = serializers.IntegerField(allow_null=True)
    agreement_id = serializers.IntegerField(allow_null=True)
    url = serializers.SerializerMethodField()
    expires_at = AwareDateTimeField()
    created_at = AwareDateTimeField()
    signed_at = AwareDateTimeField(allow_null=True)

    @extend_schema_field(
        {"type": "string", "enum": [AgreementSignupStatus.PENDING, AgreementSignupStatus.SIGNED, EXPIRED]}
    )
    def get_status(self, signup: Any) -> str:
        if signup.status == AgreementSignupStatus.PENDING and signup.expires_at <= timezone.now():
            return EXPIRED
        return signup.status

    @extend_schema_field({"type": "string", "format": "uri"})
    def get_url(self, signup: Any) -> str:
        return f"{settings.SITE_URL.rstrip('/')}/pay/agreement/{signup.token}"


class UsageEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    merchant_event_id = serializers.CharField()
    quantity = QuantityField()
    occurred_at = AwareDateTimeField()
    properties = serializers.DictField()
    created_at = AwareDateTimeField()
    duplicate = serializers.BooleanField(help_text="True when this id had been recorded before (a replay).")


class UsageBatchOut(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.ListField(
        child=serializers.CharField(), help_text="Event ids that had been recorded before (not counted again)."
    )


class ListingOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    scenario = serializers.ChoiceField(choices=Scenario.choices)
    confirm_mode = serializers.ChoiceField(choices=ConfirmMode.choices)
    status = serializers.ChoiceField(choices=ListingStatus.choices)
    max_amount = MoneyField()
    min_score = serializers.IntegerField()
    order_ttl_minutes = serializers.IntegerField()
    pricing_rule = serializers.DictField()
    created_at = AwareDateTimeField()
    updated_at = AwareDateTimeField()


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, documented code (docs/api.md, 'Errors').")
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField())
    reasons = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text="Decline reasons, when the error is a declined assessment.",
    )


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """A list page of ``item`` for the OpenAPI document."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "data": item(many=True),
            "has_more": serializers.BooleanField(),
            "next_cursor": serializers.CharField(allow_null=True),
            "__module__": __name__,
        },
    )


OrderPage = page_of(OrderOut, "OrderPage")
AgreementPage = page_of(AgreementOut, "AgreementPage")
ListingPage = page_of(ListingOut, "ListingPage")
