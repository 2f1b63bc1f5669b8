"""Merchant API endpoints after completion: refund, modify (lower the amount), collect, settlements.

Kept apart from ``views.py`` but built on its base view: every order is looked up through
the merchant-scoped selector (another merchant's id is 404), every POST is idempotent
by ``Idempotency-Key``, and each handler calls one service.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from bnpl.choices import ActorKind
from bnpl.models import Refund, SettlementBatch
from bnpl.models.settlement import RefundStatus
from bnpl.refunds import credit_order_collect, credit_order_lower_amount, credit_order_refund
from bnpl.settlement import (
    STATEMENT_FORMATS,
    XLSX_CONTENT_TYPE,
    settlement_batch_get_for_merchant,
    settlement_batches_for_merchant,
    statement_file,
)
from bnpl.webhooks import settlement_livemode

from .errors import ApiError
from .idempotency import idempotent
from .pagination import PARAMETERS as PAGE_PARAMETERS
from .pagination import page_body, paginate
from .serializers import MoneyField, OrderOut, StrictSerializer
from .views import (
    IDEMPOTENCY_KEY,
    ORDER_EXAMPLE,
    READ_ERRORS,
    WRITE_ERRORS,
    MerchantApiView,
    _example,
    _id_parameter,
    _validated,
)

REFUND_EXAMPLE = {
    "id": 501,
    "order_id": 1024,
    "out_refund_no": "RF-20261120-1",
    "amount": "20.00",
    "reason": "退货",
    "status": "succeeded",
    "decline_code": "",
    "requested_at": "2026-11-21T10:00:00+08:00",
    "finished_at": "2026-11-21T10:00:01+08:00",
}
SETTLEMENT_EXAMPLE = {
    "id": 77,
    "business_date": "2026-11-20",
    "gross_amount": "150.00",
    "fee_amount": "0.90",
    "refund_amount": "40.00",
    "adjustment_amount": "0.00",
    "held_amount": "0.00",
    "released_amount": "0.00",
    "net_amount": "109.10",
    "item_count": 5,
    "payout_status": "pending",
    "created_at": "2026-11-21T02:00:05+08:00",
}


class RefundIn(StrictSerializer):
    amount = MoneyField(allow_zero=False)
    reason = serializers.CharField(max_length=200)
    out_refund_no = serializers.CharField(max_length=64, help_text="Your refund number, unique per merchant.")


class RefundOut(serializers.Serializer):
    id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    out_refund_no = serializers.CharField(source="idempotency_key")
    amount = MoneyField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=RefundStatus.choices)
    decline_code = serializers.CharField()
    requested_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class ModifyIn(StrictSerializer):
    amount = MoneyField(help_text="The new, lower amount due.")
    reason = serializers.CharField(max_length=200)


class EmptyIn(StrictSerializer):
    """No fields: a body with any field is refused (``unknown_field``)."""


class SettlementOut(serializers.Serializer):
    id = serializers.IntegerField()
    business_date = serializers.DateField()
    gross_amount = MoneyField()
    fee_amount = MoneyField()
    refund_amount = MoneyField()
    adjustment_amount = MoneyField()
    held_amount = MoneyField()
    released_amount = MoneyField()
    net_amount = MoneyField()
    item_count = serializers.IntegerField()
    payout_status = serializers.CharField(source="payout.status")
    created_at = serializers.DateTimeField()


class SettlementPage(serializers.Serializer):
    data = SettlementOut(many=True)
    has_more = serializers.BooleanField()
    next_cursor = serializers.CharField(allow_null=True)


class OrderRefund(MerchantApiView):
    @extend_schema(
        operation_id="orders_refund",
        summary="Refund part or all of a charged order, with a reason",
        description="Only after the charge; Σ refunds ≤ the amount charged. `status` may be `unknown`: the "
        "platform reconciles it with the payment provider; query the order later.",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=RefundIn,
        responses={201: RefundOut, **WRITE_ERRORS},
        examples=[
            _example("Partial refund", {"amount": "20.00", "reason": "退货", "out_refund_no": "RF-1"}, request=True),
            _example("Refunded", REFUND_EXAMPLE, status_code="201"),
        ],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(RefundIn, request)
        refund: Refund = credit_order_refund(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            order=self.order(order_id),
            amount=data["amount"],
            reason=data["reason"],
            idempotency_key=data["out_refund_no"],
        )
        return Response(RefundOut(refund).data, status=201)


class OrderModify(MerchantApiView):
    @extend_schema(
        operation_id="orders_modify",
        summary="Lower the amount of an order before it is charged, with a reason",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=ModifyIn,
        responses={200: OrderOut, **WRITE_ERRORS},
        examples=[
            _example("Lower", {"amount": "4.00", "reason": "优惠券"}, request=True),
            _example("Order", ORDER_EXAMPLE),
        ],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        data = _validated(ModifyIn, request)
        order = credit_order_lower_amount(
            actor=None,
            actor_kind=ActorKind.MERCHANT,
            order=self.order(order_id),
            new_amount=data["amount"],
            reason=data["reason"],
        )
        return self.order_response(order)


class OrderCollect(MerchantApiView):
    @extend_schema(
        operation_id="orders_collect",
        summary="Ask for one more collection attempt of a collecting or overdue order",
        tags=["Credit orders"],
        parameters=[_id_parameter("order_id"), IDEMPOTENCY_KEY],
        request=None,
        responses={200: OrderOut, **WRITE_ERRORS},
        examples=[_example("Order", ORDER_EXAMPLE)],
    )
    @idempotent(atomic=False)
    def post(self, request: Request, order_id: str) -> Response:
        _validated(EmptyIn, request)
        order = credit_order_collect(actor=None, actor_kind=ActorKind.MERCHANT, order=self.order(order_id))
        return self.order_response(order)


class SettlementList(MerchantApiView):
    @extend_schema(
        operation_id="settlements_list",
        summary="List settlement batches",
        tags=["Settlements"],
        parameters=[*PAGE_PARAMETERS],
        responses={200: SettlementPage, **READ_ERRORS},
        examples=[_example("Page", {"data": [SETTLEMENT_EXAMPLE], "has_more": False, "next_cursor": None})],
    )
    def get(self, request: Request) -> Response:
        batches = settlement_batches_for_merchant(merchant=self.merchant, livemode=not self.principal.sandbox)
        rows, next_cursor = paginate(request, batches)
        return Response(page_body(SettlementOut(rows, many=True).data, next_cursor))


STATEMENT_FORMAT = OpenApiParameter(
    "format",
    str,
    OpenApiParameter.QUERY,
    enum=list(STATEMENT_FORMATS),
    default="csv",
    description="`csv` (UTF-8 with a BOM) or `xlsx` (an Excel workbook with a header block and number formats).",
)


class SettlementStatement(MerchantApiView):
    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # ``?format=`` names the file format here, not a DRF renderer: errors are always JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="settlements_statement",
        summary="Download a batch's statement (对账单) as CSV (UTF-8 with BOM) or XLSX",
        tags=["Settlements"],
        parameters=[_id_parameter("batch_id"), STATEMENT_FORMAT],
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="CSV, UTF-8 with a BOM; one line per settlement item, then a total line.",
                examples=[
                    OpenApiExample(
                        "Statement",
                        value="\ufeffOrder id,Merchant order no.,Time,Type,Gross,Fee,Refund,Adjustment,Held,Net\r\n"
                        "1024,EX-1,2026-11-20 14:03,Order,100.00,0.00,0.00,0.00,0.00,100.00\r\n",
                        response_only=True,
                    )
                ],
            ),
            (200, XLSX_CONTENT_TYPE): OpenApiResponse(
                response=OpenApiTypes.BINARY,
                description="The same lines as the CSV in an Excel workbook, after a header block.",
            ),
            **READ_ERRORS,
        },
    )
    def get(self, request: Request, batch_id: str) -> Any:
        fmt = request.query_params.get("format", "csv")
        if fmt not in STATEMENT_FORMATS:
            message = _("Choose csv or xlsx.")
            raise ApiError(message, code="validation_failed", status_code=400, fields={"format": message})
        try:
            batch = settlement_batch_get_for_merchant(merchant=self.merchant, batch_id=batch_id)
        except (SettlementBatch.DoesNotExist, ValueError):
            raise ApiError(_("No such settlement batch."), code="not_found", status_code=404) from None
        if settlement_livemode(batch.pk) == self.principal.sandbox:
            raise self.mode_mismatch()  # a test key reads test-mode batches only, a live key live ones
        statement = statement_file(batch, fmt)
        response = HttpResponse(statement.content, content_type=statement.content_type)
        response["Content-Disposition"] = f'attachment; filename="{statement.filename}"'
        return response


@extend_schema(exclude=True)
class SettlementStatementCsvPath(SettlementStatement):
    """``/settlements/<id>/statement.csv``: the route before the format parameter (same behaviour)."""
