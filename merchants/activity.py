"""The team activity log (``MerchantActivity``): one call per portal or API action that changes something.

Call it inside the transaction of the change (services are ``@transaction.atomic``; a view calling a
service then this should wrap both in ``transaction.atomic()``), so a refused action leaves no line.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .models import Merchant, MerchantActivity, MerchantMember


def activity_record(
    *,
    merchant: Merchant,
    member: MerchantMember | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> MerchantActivity:
    """Append one line to ``merchant``'s activity log; ``member`` None means the API or the platform.

    ``action`` is a stable dotted verb (``order.refund``, ``listing.pause``, ``team.invite``) that the log
    page translates; ``detail`` is made JSON-safe (Decimals and datetimes become strings).
    """
    safe_detail = json.loads(json.dumps(detail or {}, cls=DjangoJSONEncoder))
    return MerchantActivity.objects.create(
        merchant=merchant,
        user=member.user if member else None,
        role=member.role if member else "",
        action=action,
        target=target[:120],
        detail=safe_detail,
    )
