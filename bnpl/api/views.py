"""The merchant API's views: thin — bind the input, look up through a merchant-scoped selector, call one service.

Every lookup by an id from the request goes through a selector scoped to the key's merchant, so
another merchant's id is 404 exactly like an id that does not exist. The key's mode is then
checked: a test-mode key acts on sandbox consumers' orders and agreements only, a live key on real
consumers' only (403 ``livemode_mismatch``); lists show only the key's mode.

API actions are recorded with ``actor=None`` and ``actor_kind="merchant"``: the merchant's
system acted, not a person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bnpl.choices import ActorKind, AgreementStatus, OrderStatus
from bnpl.exceptions import DomainError, NotAllowed
from bnpl.models import Agreement, CreditOrder, UsageEvent
from bnpl.selectors import (
    agreement_get_for_merchant,
    agreement_signup_get_for_merchant,
    agreements_for_merchant,
    consumer_named_by_merchant,
    credit_order_get_by_out_order_no,
    credit_order_get_for_merchant,
    credit_orders_for_merchant,
)
from bnpl.services import (
    MAX_USAGE_BATCH,
    UsageInput,
    agreement_close,
    agreement_signup_create,
    credit_order_cancel,
    credit_order_complete,
    credit_order_create,
    credit_order_mark_paid_elsewhere,
    usage_record_batch,
)
from consumers.models import Consumer
from merchants.models import Listing
from merchants.selectors import listing_get_for_merchant, listings_for_merchant
from merchants.services import listing_create, listing_pause, listing_resume, listing_update

from . import serializers as s
from .authentication import ApiKeyAuthentication, ApiKeyRateThrottle, ApiPrincipal
from .errors import ApiError, UnknownField, error_body
from .idempotency import idempotent
from .pagination import PARAMETERS as PAGE_PARAMETERS
from .pagination import page_body, paginate
from .parsers import StrictJSONParser

# --------------------------------------------------------------------------- OpenAPI helpers

_ERROR_DESCRIPTIONS = {
    400: "Invalid request: malformed_json, unknown_field, validation_failed, idempotency_key_missing, …",
    401: "authentication_required, invalid_api_key or api_key_revoked",
    403: "livemode_mismatch / livemode_required: the key's mode cannot act on this object",
    404: "not_found: no such object for this merchant",
    409: "invalid_state, duplicate_*, idempotency_in_progress, …",
    422: "idempotency_key_reused: the Idempotency-Key was used for another request",
    429: "rate_limited (see Retry-After)",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(s.ErrorOut, description=_ERROR_DESCRIPTIONS[code]) for code in codes}


READ_ERRORS = _errors(400, 401, 403, 404, 429)
WRITE_ERRORS = _errors(400, 401, 403, 404, 409, 422, 429)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per logical request (a UUID). Retrying with the same key and body replays the "
    "stored response; the same key with another body is 422; while the first is running, 409.",
)


def _id_parameter(name: str) -> OpenApiParameter:
    return OpenApiParameter(name, {"type": "integer", "minimum": 1, "maximum": s.MAX_ID}, OpenApiParameter.PATH)


ORDER_EXAMPLE = {
    "id": 1042,
    "out_order_no": "CHG-20261125-0001",
    "status": "active",
    "livemode": True,
    "listing_id": 7,
    "consumer_id": 311,
    "agreement_id": 88,
    "title": "电动车充电桩 3号",
    "scenario": "ebike_charging",
    "confirm_mode": "agreement",
    "max_amount": "20.00",
    "amount_due": None,
    "confirmation_url": None,
    "decision": {"id": 5120, "outcome": "approved", "reasons": []},
    "bill_lines": [],
    "expires_at": None,
    "confirmed_at": "2026-11-25T20:15:00+08:00",
    "completed_at": None,
    "due_at": None,
    "closed_at": None,
    "close_reason": "",
    "created_at": "2026-11-25T20:15:00+08:00",
    "updated_at": "2026-11-25T20:15:00+08:00",
}


def _example(name: str, value: Any, *, request: bool = False, status_code: str = "200") -> OpenApiExample:
    return OpenApiExample(
        name, value=value, request_only=request, response_only=not request, status_codes=[status_code]
    )


# --------------------------------------------------------------------------- base


def _validated(serializer_class: type[serializers.Serializer], request: Request, *, partial: bool = False) -> Any:
    if not isinstance(request.data, dict):
        raise ApiError(_("The body must be a JSON object."), code="validation_failed")
    serializer = serializer_class(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class MerchantApiView(APIView):
    """Base of every endpoint: API-key authentication, the per-key rate limit, mode checks."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [StrictJSONParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Path and query text reach queries too; NUL cannot be stored or compared in PostgreSQL.
        texts = [*kwargs.values(), *request.query_params.values()]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ApiError(_("Text must not contain NUL characters."), code="validation_failed")

    @property
    def principal(self) -> ApiPrincipal:
        return self.request.user

    @property
    def merchant(self) -> Any:
        return self.principal.merchant

    def mode_mismatch(self) -> NotAllowed:
        if self.principal.sandbox:
            message = _("A test-mode key acts on sandbox consumers only.")
        else:
            message = _("A live key cannot act on sandbox consumers.")
        return NotAllowed(message, code="livemode_mismatch")

    def check_consumer_mode(self, consumer: Consumer | None) -> None:
        """Refuse (403) an object whose consumer belongs to the other mode; no consumer = live."""
        is_sandbox = consumer is not None and consumer.is_sandbox
        if is_sandbox != self.principal.sandbox:
            raise self.mode_mismatch()

    def require_live(self) -> None:
        if self.principal.sandbox:
            raise NotAllowed(_("Listings are changed with a live key only."), code="livemode_required")

    def consumer(self, consumer_id: int) -> Consumer:
        """A consumer named in the request: 403 across modes, 404 unless the merchant may name them.

        The consumer comes back with ``id`` and ``is_sandbox`` loaded (the services read what else they
        need, fresh); other fields load on first access.
        """
        named = consumer_named_by_merchant(merchant=self.merchant, consumer_id=consumer_id)
        if named is not None and named.consumer.is_sandbox != self.principal.sandbox:
            raise self.mode_mismatch()
        if named is None or not named.nameable(sandbox=self.principal.sandbox):
            message = _("No such consumer.")
            raise ApiError(message, code="not_found", status_code=404, fields={"consumer_id": message})
        return named.consumer

    def listing(self, listing_id: object) -> Listing:
        try:
            return listing_get_for_merchant(merchant=self.merchant, listing_id=listing_id)
        except Listing.DoesNotExist:
            message = _("No such listing.")
            raise ApiError(message, code="not_found", status_code=404, fields={"listing_id": message}) from None

    # Orders ------------------------------------------------------------------

    def orders(self) -> QuerySet[CreditOrder]:
        queryset = credit_orders_for_merchant(merchant=self.merchant).select_related("decision")
        queryset = queryset.prefetch_related("bill_lines")
        if self.principal.sandbox:
            return queryset.filter(consumer__is_sandbox=True)
        return queryset.filter(Q(consumer__isnull=True) | Q(consumer__is_sandbox=False))

    def order(self, order_id: object) -> CreditOrder:
        order = credit_order_get_for_merchant(merchant=self.merchant, order_id=order_id)  # 404 for others
        self.check_consumer_mode(order.consumer)
        return order

    def order_response(self, order: CreditOrder, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.orders_unfiltered().get(pk=order.pk)
        return Response(s.order_data(fresh), status=status_code)

    def orders_unfiltered(self) -> QuerySet[CreditOrder]:
        return (
            credit_orders_for_merchant(merchant=self.merchant).select_related("decision").prefetch_related("bill_lines")
        )

    # Agreements --------------------------------------------------------------

    def agreement(self, agreement_id: object) -> Agreement:
        agreement = agreement_get_for_merchant(merchant=self.merchant, agreement_id=agreement_id)
        self.check_consumer_mode(agreement.consumer)
        return agreement


class ApiNotFound(APIView):
    """Any other path under /api/v1/: the API's own 404 (JSON, the error format)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    schema = None

    def _not_found(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(error_body("not_found", _("No such endpoint.")), status=status.HTTP_404_NOT_FOUND)

    get = post = put = patch = delete = _not_found


# --------------------------------------------------------------------------- orders


def _aware(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or timezone.is_naive(value):
        message = _("Give the time in ISO 8601 with its UTC offset, e.g. 2026-11-25T20:15:00+08:00.")
        raise ApiError(message, code="validation_failed", fields={name: message})
    return value


class OrderListCreate(MerchantApiView):
    @extend_schema(
        operation_id="orders_list",
        summary="List credit orders",
        description="Newest first, cursor-paginated. Shows only the key's mode.",
        tags=["Credit orders"],
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("status", {"type": "string", "enum": OrderStatus.values}),
            OpenApiParameter("out_order_no", OpenApiTypes.STR),
            OpenApiParameter("created_after", OpenApiTypes.DATETIME, description="ISO 8601 with offset, inclusive"),
            OpenApiParameter("created_before", OpenApiTypes.DATETIME, description="ISO 8601 with offset, exclusive"),
        ],
        responses={200: s.OrderPage, **READ_ERRORS},
        examples=[_example("A page", {"data": [ORDER_EXAMPLE], "has_more": True, "next_cursor": "WyIyMDI2LTExLTI1…"})],
    )
    def get(self, request: Request) -> Response:
        queryset = self.orders()
        order_status = request.query_params.get("status")
        if order_status:
            if order_status not in OrderStatus.values:
                message = _("Unknown status.")
                raise ApiError(message, code="validation_failed", fields={"status": message})
            queryset = queryset.filter(status=order_status)
        out_order_no = request.query_params.get("out_order_no")
        if out_order_no:
            queryset = queryset.filter(out_order_no=out_order_no)
        after, before = _aware(request, "created_after"), _aware(request, "created_before")
        if after is not None:
            queryset = queryset.filter(created_at__gte=after)
        if before is not None:
            queryset = queryset.filter(created_at__lt=before)
        rows, next_cursor = paginate(request, queryset)
        return Response(page_body([s.order_data(row) for row in rows], next_cursor))

    @extend_schema(
        operation_id="orders_create",
        summary="Create a credit order",
        description=(
            "Confirm-each-time listings: the order awaits the consumer's confirmation at `confirmation_url`. "
            "Agreement listings: the consumer's standing agreement is used and the order is assessed at once; "
            "it comes back `active` (its cap held) or `declined` with the decision's reasons."
        ),
        tags=["Credit orders"],
        parameters=[IDEMPOTENCY_KEY],
        request=s.OrderCreateIn,
        responses={201: s.OrderOut, **WRITE_ERRORS},
        examples=[
            _example(
                "Order under an agreement",
                {"listing_id": 7, "out_order_no": "CHG-20261125-0001", "consumer_id": 311, "max_amount": "20.00"},
                request=True,
            ),
            _example("Active order", ORDER_EXAMPLE, status_code="201"),
        ],
    )
    @idempotent(atomic=False)
    def post(self, request: Request) -> Response:
        data = _validated(s.OrderCreateIn, request)
        listing = self.listing(data["listing_id"])
        consumer = self.consumer(data["consumer_id"]) if "consumer_id" in data else None
        if consumer is None and self.principal.sandbox:
            message = _("Test-mode orders are made out to a sandbox consumer: give consumer_id.")
            raise ApiError(message, code="validation_failed", fields={"consumer_id": message})
        order = credit_order_create(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            merchant=self.merchant,
            listing=listing,
            out_order_no=data["out_order_no"],
            consumer=consumer,
            max_amount=data.get("max_amount"),
            title=data.get("title", ""),
            listing_is_fresh=True,
        )
        # The service hands back the order as it committed it, with its decision: a new order has no bill
        # lines, and the consumer's mode is known, so the answer needs no read.
        livemode = consumer is None or not consumer.is_sandbox
        return Response(s.order_data(order, livemode=livemode, bill_lines=()), status=status.HTTP_201_CREATED)


class OrderDetail(MerchantApiView):
    @extend_schema(
        operation_id="orders_retrieve",
        summary="Get a credit order by id",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id")],
        responses={200: s.OrderOut, **READ_ERRORS},
        examples=[_example("Order", ORDER_EXAMPLE)],
    )
    def get(self, request: Request, order_id: str) -> Response:
        return self.order_response(self.order(order_id))


class OrderByOutOrderNo(MerchantApiView):
    @extend_schema(
        operation_id="orders_retrieve_by_out_order_no",
        summary="Get a credit order by your order number",
        tags=["Credit orders"],
        parameters=[OpenApiParameter("out_order_no", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: s.OrderOut, **READ_ERRORS},
        examples=[_example("Order", ORDER_EXAMPLE)],
    )
    def get(self, request: Request, out_order_no: str) -> Response:
        order = credit_order_get_by_out_order_no(merchant=self.merchant, out_order_no=out_order_no)
        self.check_consumer_mode(order.consumer)
        return self.order_response(order)


def _single_event_fields(exc: DomainError) -> DomainError:
    # The single-event endpoint reuses the batch service; its field names carry no "events[0]." prefix.
    exc.fields = {key.removeprefix("events[0]."): value for key, value in exc.fields.items()}
    return exc


class OrderUsage(MerchantApiView):
    @extend_schema(
        operation_id="orders_usage_create",
        summary="Report one usage event of an active order",
        description="Idempotent on `merchant_event_id`: a repeat returns the recorded event with "
        "`duplicate: true` (200); the same id with another quantity or order is 409 duplicate_event_conflict.",
        tags=["Usage"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=s.UsageIn,
        responses={201: s.UsageEventOut, 200: s.UsageEventOut, **WRITE_ERRORS},
        examples=[
            _example(
                "Two hours of charging",
                {"merchant_event_id": "sess-88-1", "quantity": "2", "occurred_at": "2026-11-25T22:15:00+08:00"},
                request=True,
            )
        ],
    )
    @idempotent(atomic=True)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(s.UsageIn, request)
        order = self.order(order_id)
        try:
            result = usage_record_batch(
                actor=None,
                merchant=self.merchant,
                events=[
                    UsageInput(
                        order_id=order.pk,
                        merchant_event_id=data["merchant_event_id"],
                        quantity=data["quantity"],
                        occurred_at=data["occurred_at"],
                        properties=data.get("properties", {}),
                    )
                ],
            )
        except DomainError as exc:
            raise _single_event_fields(exc) from None
        event = UsageEvent.objects.get(merchant=self.merchant, merchant_event_id=data["merchant_event_id"].strip())
        body = {
            "id": event.pk,
            "order_id": event.order_id,
            "merchant_event_id": event.merchant_event_id,
            "quantity": event.quantity,
            "occurred_at": event.occurred_at,
            "properties": event.properties,
            "created_at": event.created_at,
            "duplicate": result.created == 0,
        }
        return Response(
            s.UsageEventOut(body).data, status=status.HTTP_200_OK if result.created == 0 else status.HTTP_201_CREATED
        )


_BATCH_FIELDS = frozenset({"order_id", "out_order_no", "merchant_event_id", "quantity", "occurred_at", "properties"})


def _batch_inputs(payload: Any) -> list[UsageInput]:
    """Parse the batch by hand: a thousand events through DRF serializers would cost more than storing them."""
    if not isinstance(payload, dict):
        raise ApiError(_("The body must be a JSON object."), code="validation_failed")
    unknown = sorted(set(payload) - {"events"})
    if unknown:
        raise UnknownField(
            _("Unknown field(s): %(names)s.") % {"names": ", ".join(unknown)},
            fields={name: _("Unknown field.") for name in unknown},
        )
    events = payload.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_USAGE_BATCH:
        message = _("Send between 1 and %(n)d events.") % {"n": MAX_USAGE_BATCH}
        raise ApiError(message, code="validation_failed", fields={"events": message})
    inputs: list[UsageInput] = []
    errors: dict[str, str] = {}
    unknown_fields: dict[str, str] = {}
    for index, raw in enumerate(events):
        prefix = f"events[{index}]"
        if not isinstance(raw, dict):
            errors[prefix] = _("Must be an object.")
            continue
        for name in raw.keys() - _BATCH_FIELDS:
            unknown_fields[f"{prefix}.{name}"] = _("Unknown field.")
        occurred_at: Any = raw.get("occurred_at")
        try:
            occurred_at = datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str) else None
        except ValueError:
            occurred_at = None
        if occurred_at is None or timezone.is_naive(occurred_at):
            errors[f"{prefix}.occurred_at"] = _("Give the time in ISO 8601 with its UTC offset.")
            continue
        event_id, order_id, out_order_no = raw.get("merchant_event_id"), raw.get("order_id"), raw.get("out_order_no")
        if not isinstance(event_id, str):
            errors[f"{prefix}.merchant_event_id"] = _("Give the event id (1 to 64 characters).")
            continue
        if order_id is not None and (isinstance(order_id, bool) or not isinstance(order_id, int)):
            errors[f"{prefix}.order_id"] = _("Must be an integer.")
            continue
        if out_order_no is not None and not isinstance(out_order_no, str):
            errors[f"{prefix}.out_order_no"] = _("Must be a string.")
            continue
        quantity = raw.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, str | int):
            errors[f"{prefix}.quantity"] = _('Give the quantity as a decimal string such as "1.5".')
            continue
        properties = raw.get("properties", {})
        inputs.append(
            UsageInput(
                merchant_event_id=event_id,
                quantity=quantity,
                occurred_at=occurred_at,
                order_id=order_id,
                out_order_no=out_order_no,
                properties=properties if properties is not None else {},
            )
        )
    if unknown_fields:
        raise UnknownField(_("Unknown field(s) in the events."), fields=unknown_fields)
    if errors:
        raise ApiError(_("The usage events have errors."), code="validation_failed", fields=errors)
    return inputs


class UsageBatch(MerchantApiView):
    @extend_schema(
        operation_id="usage_batch_create",
        summary="Report up to 1,000 usage events at once",
        description=(
            "Each event names its order by `order_id` or `out_order_no`. All or nothing: one invalid event, "
            "unknown order or finished order refuses the whole batch, naming it (`events[i].…`). "
            "Event ids recorded before are replays, listed in `duplicates` and not counted again."
        ),
        tags=["Usage"],
        parameters=[IDEMPOTENCY_KEY],
        request=s.UsageBatchIn,
        responses={200: s.UsageBatchOut, **WRITE_ERRORS},
        examples=[
            _example(
                "Two sessions",
                {
                    "events": [
                        {
                            "out_order_no": "CHG-1",
                            "merchant_event_id": "e-1",
                            "quantity": "1",
                            "occurred_at": "2026-11-25T20:00:00+08:00",
                        },
                        {
                            "out_order_no": "CHG-2",
                            "merchant_event_id": "e-2",
                            "quantity": "0.5",
                            "occurred_at": "2026-11-25T20:01:00+08:00",
                        },
                    ]
                },
                request=True,
            ),
            _example("Result", {"received": 2, "created": 2, "duplicates": []}),
        ],
    )
    @idempotent(atomic=True)
    def post(self, request: Request) -> Response:
        inputs = _batch_inputs(request.data)
        result = usage_record_batch(actor=None, merchant=self.merchant, events=inputs, sandbox=self.principal.sandbox)
        return Response({"received": result.received, "created": result.created, "duplicates": result.duplicates})


def _lines(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in item.items()} for item in items]


class OrderComplete(MerchantApiView):
    @extend_schema(
        operation_id="orders_complete",
        summary="Complete an active order with its final bill",
        description=(
            "`amount_due = Σ lines − Σ discounts`, never above `max_amount` (else 400 amount_exceeds_cap). "
            "Without `lines` the reported usage is rated under the order's pricing rule."
        ),
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=s.CompleteIn,
        responses={200: s.OrderOut, **WRITE_ERRORS},
        examples=[
            _example(
                "Express delivery bill",
                {
                    "lines": [
                        {"name": "首重费", "quantity": "1", "unit": "kg", "unit_price": "12.00", "amount": "12.00"},
                        {"name": "续重费", "quantity": "2", "unit": "kg", "unit_price": "3.00", "amount": "6.00"},
                        {"name": "保价费", "amount": "1.00"},
                    ],
                    "discounts": [{"name": "新客立减", "amount": "2.00"}],
                },
                request=True,
            ),
            _example("Completed order", {**ORDER_EXAMPLE, "status": "completed", "amount_due": "17.00"}),
        ],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(s.CompleteIn, request)
        order = self.order(order_id)
        order = credit_order_complete(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            order=order,
            lines=_lines(data["lines"]) if "lines" in data else None,
            discounts=_lines(data.get("discounts", [])),
            reason=data.get("reason", ""),
        )
        return self.order_response(order)


class OrderCancel(MerchantApiView):
    @extend_schema(
        operation_id="orders_cancel",
        summary="Cancel a pending or active order, with a reason",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=s.ReasonIn,
        responses={200: s.OrderOut, **WRITE_ERRORS},
        examples=[_example("Cancel", {"reason": "用户未取件"}, request=True)],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(s.ReasonIn, request)
        order = credit_order_cancel(
            actor=None, actor_kind=ActorKind.MERCHANT, order=self.order(order_id), reason=data["reason"]
        )
        return self.order_response(order)


class OrderSync(MerchantApiView):
    @extend_schema(
        operation_id="orders_sync",
        summary="Mark an unpaid completed order paid through another channel",
        description="WeChat Pay Score's 'sync': the consumer paid you elsewhere; the platform stops collecting.",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=s.ReasonIn,
        responses={200: s.OrderOut, **WRITE_ERRORS},
        examples=[_example("Paid at the counter", {"reason": "paid in cash at the store"}, request=True)],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(s.ReasonIn, request)
        order = credit_order_mark_paid_elsewhere(
            actor=None, actor_kind=ActorKind.MERCHANT, order=self.order(order_id), reason=data["reason"]
        )
        return self.order_response(order)


# --------------------------------------------------------------------------- agreements

AGREEMENT_EXAMPLE = {
    "id": 88,
    "status": "valid",
    "livemode": True,
    "listing_id": 7,
    "consumer_id": 311,
    "signed_at": "2026-11-20T09:30:00+08:00",
    "closed_at": None,
    "close_reason": "",
}


class AgreementList(MerchantApiView):
    @extend_schema(
        operation_id="agreements_list",
        summary="List standing agreements",
        tags=["Agreements"],
        parameters=[
            *PAGE_PARAMETERS,
            OpenApiParameter("status", {"type": "string", "enum": AgreementStatus.values}),
            OpenApiParameter("listing_id", {"type": "integer", "minimum": 1, "maximum": s.MAX_ID}),
            OpenApiParameter("consumer_id", {"type": "integer", "minimum": 1, "maximum": s.MAX_ID}),
        ],
        responses={200: s.AgreementPage, **READ_ERRORS},
        examples=[_example("A page", {"data": [AGREEMENT_EXAMPLE], "has_more": False, "next_cursor": None})],
    )
    def get(self, request: Request) -> Response:
        queryset = agreements_for_merchant(merchant=self.merchant).filter(consumer__is_sandbox=self.principal.sandbox)
        agreement_status = request.query_params.get("status")
        if agreement_status:
            if agreement_status not in AgreementStatus.values:
                message = _("Unknown status.")
                raise ApiError(message, code="validation_failed", fields={"status": message})
            queryset = queryset.filter(status=agreement_status)
        for name in ("listing_id", "consumer_id"):
            raw = request.query_params.get(name)
            if raw:
                try:
                    value = int(raw)
                except ValueError:
                    value = 0
                if not 0 < value <= s.MAX_ID:
                    message = _("Give an id.")
                    raise ApiError(message, code="validation_failed", fields={name: message})
                queryset = queryset.filter(**{name: value})
        rows, next_cursor = paginate(request, queryset, time_field="signed_at")
        return Response(page_body(s.AgreementOut(rows, many=True).data, next_cursor))


class AgreementDetail(MerchantApiView):
    @extend_schema(
        operation_id="agreements_retrieve",
        summary="Get a standing agreement",
        tags=["Agreements"],
        parameters=[_id_parameter("agreement_id")],
        responses={200: s.AgreementOut, **READ_ERRORS},
        examples=[_example("Agreement", AGREEMENT_EXAMPLE)],
    )
    def get(self, request: Request, agreement_id: str) -> Response:
        return Response(s.AgreementOut(self.agreement(agreement_id)).data)


class AgreementClose(MerchantApiView):
    @extend_schema(
        operation_id="agreements_close",
        summary="Close a standing agreement",
        description="Refused (409 order_open) while any order under it is open.",
        tags=["Agreements"],
        parameters=[_id_parameter("agreement_id"), IDEMPOTENCY_KEY],
        request=s.OptionalReasonIn,
        responses={200: s.AgreementOut, **WRITE_ERRORS},
        examples=[_example("Closed", {**AGREEMENT_EXAMPLE, "status": "closed", "close_reason": "service ended"})],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, agreement_id: str) -> Response:
        data = _validated(s.OptionalReasonIn, request)
        agreement = agreement_close(actor=None, agreement=self.agreement(agreement_id), reason=data.get("reason", ""))
        return Response(
            s.AgreementOut(agreement_get_for_merchant(merchant=self.merchant, agreement_id=agreement.pk)).data
        )


SIGNUP_EXAMPLE = {
    "id": 12,
    "out_agreement_no": "AGR-311",
    "status": "pending",
    "livemode": True,
    "listing_id": 7,
    "consumer_id": None,
    "agreement_id": None,
    "url": "https://pay.example.com/pay/agreement/3mJ0…",
    "expires_at": "2026-11-26T20:15:00+08:00",
    "created_at": "2026-11-25T20:15:00+08:00",
    "signed_at": None,
}


class AgreementSignupCreate(MerchantApiView):
    @extend_schema(
        operation_id="agreement_signups_create",
        summary="Create a sign-up link for a standing agreement",
        description="Send the consumer to `url`; they sign (and are assessed) there. "
        "You receive `agreement.signed` by webhook.",
        tags=["Agreements"],
        parameters=[IDEMPOTENCY_KEY],
        request=s.AgreementSignupIn,
        responses={201: s.AgreementSignupOut, **WRITE_ERRORS},
        examples=[
            _example("Sign-up link", {"listing_id": 7, "out_agreement_no": "AGR-311"}, request=True),
            _example("Link", SIGNUP_EXAMPLE, status_code="201"),
        ],
    )
    @idempotent(atomic=True)
    def post(self, request: Request) -> Response:
        data = _validated(s.AgreementSignupIn, request)
        listing = self.listing(data["listing_id"])
        consumer = self.consumer(data["consumer_id"]) if "consumer_id" in data else None
        signup = agreement_signup_create(
            actor=None,
            merchant=self.merchant,
            listing=listing,
            out_agreement_no=data["out_agreement_no"],
            consumer=consumer,
            livemode=not self.principal.sandbox,
        )
        return Response(s.AgreementSignupOut(signup).data, status=status.HTTP_201_CREATED)


class AgreementSignupDetail(MerchantApiView):
    @extend_schema(
        operation_id="agreement_signups_retrieve",
        summary="Get a sign-up link",
        tags=["Agreements"],
        parameters=[_id_parameter("signup_id")],
        responses={200: s.AgreementSignupOut, **READ_ERRORS},
        examples=[_example("Link", SIGNUP_EXAMPLE)],
    )
    def get(self, request: Request, signup_id: str) -> Response:
        signup = agreement_signup_get_for_merchant(merchant=self.merchant, signup_id=signup_id)
        if signup.livemode == self.principal.sandbox:
            raise self.mode_mismatch()
        return Response(s.AgreementSignupOut(signup).data)


# --------------------------------------------------------------------------- listings

LISTING_EXAMPLE = {
    "id": 7,
    "title": "电动车充电桩",
    "description": "扫码充电，先充后付",
    "scenario": "ebike_charging",
    "confirm_mode": "agreement",
    "status": "active",
    "max_amount": "20.00",
    "min_score": 550,
    "order_ttl_minutes": 30,
    "pricing_rule": {
        "kind": "per_unit",
        "unit": "hour",
        "unit_price": "1.00",
        "free_units": "0",
        "minimum_amount": "0.00",
        "cap_per_24h": "10.00",
        "round_up": True,
    },
    "created_at": "2026-11-01T10:00:00+08:00",
    "updated_at": "2026-11-01T10:00:00+08:00",
}


class ListingListCreate(MerchantApiView):
    @extend_schema(
        operation_id="listings_list",
        summary="List your listings",
        tags=["Listings"],
        parameters=PAGE_PARAMETERS,
        responses={200: s.ListingPage, **READ_ERRORS},
        examples=[_example("A page", {"data": [LISTING_EXAMPLE], "has_more": False, "next_cursor": None})],
    )
    def get(self, request: Request) -> Response:
        rows, next_cursor = paginate(request, listings_for_merchant(merchant=self.merchant))
        return Response(page_body(s.ListingOut(rows, many=True).data, next_cursor))

    @extend_schema(
        operation_id="listings_create",
        summary="Put a good or service on 先享 (live keys only)",
        tags=["Listings"],
        parameters=[IDEMPOTENCY_KEY],
        request=s.ListingIn,
        responses={201: s.ListingOut, **WRITE_ERRORS},
        examples=[
            _example(
                "E-bike charging",
                {k: LISTING_EXAMPLE[k] for k in ("title", "scenario", "confirm_mode", "max_amount", "pricing_rule")},
                request=True,
            ),
            _example("Listing", LISTING_EXAMPLE, status_code="201"),
        ],
    )
    @idempotent(atomic=True)
    def post(self, request: Request) -> Response:
        self.require_live()
        data = _validated(s.ListingIn, request)
        listing = listing_create(actor=None, merchant=self.merchant, **data)
        return Response(s.ListingOut(listing).data, status=status.HTTP_201_CREATED)


class ListingDetail(MerchantApiView):
    @extend_schema(
        operation_id="listings_retrieve",
        summary="Get a listing",
        tags=["Listings"],
        parameters=[_id_parameter("listing_id")],
        responses={200: s.ListingOut, **READ_ERRORS},
        examples=[_example("Listing", LISTING_EXAMPLE)],
    )
    def get(self, request: Request, listing_id: str) -> Response:
        return Response(s.ListingOut(self.listing(listing_id)).data)

    @extend_schema(
        operation_id="listings_update",
        summary="Change a listing (live keys only); new prices apply to new orders only",
        tags=["Listings"],
        parameters=[_id_parameter("listing_id")],
        request=s.ListingIn(partial=True),
        responses={200: s.ListingOut, **WRITE_ERRORS},
        examples=[
            _example("New ceiling", {"max_amount": "30.00"}, request=True),
            _example("Listing", {**LISTING_EXAMPLE, "max_amount": "30.00"}),
        ],
    )
    def patch(self, request: Request, listing_id: str) -> Response:
        self.require_live()
        listing = self.listing(listing_id)
        data = _validated(s.ListingIn, request, partial=True)
        listing = listing_update(actor=None, listing=listing, **data)
        return Response(s.ListingOut(listing).data)


class ListingPause(MerchantApiView):
    @extend_schema(
        operation_id="listings_pause",
        summary="Take a listing off sale (live keys only); open orders are unaffected",
        tags=["Listings"],
        parameters=[_id_parameter("listing_id"), IDEMPOTENCY_KEY],
        request=None,
        responses={200: s.ListingOut, **WRITE_ERRORS},
        examples=[_example("Paused", {**LISTING_EXAMPLE, "status": "paused"})],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, listing_id: str) -> Response:
        self.require_live()
        return Response(s.ListingOut(listing_pause(actor=None, listing=self.listing(listing_id))).data)


class ListingResume(MerchantApiView):
    @extend_schema(
        operation_id="listings_resume",
        summary="Put a paused listing back on sale (live keys only)",
        tags=["Listings"],
        parameters=[_id_parameter("listing_id"), IDEMPOTENCY_KEY],
        request=None,
        responses={200: s.ListingOut, **WRITE_ERRORS},
        examples=[_example("On sale", LISTING_EXAMPLE)],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, listing_id: str) -> Response:
        self.require_live()
        return Response(s.ListingOut(listing_resume(actor=None, listing=self.listing(listing_id))).data)
