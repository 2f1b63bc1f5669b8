"""The team activity log (``MerchantActivity``): one call per portal or API action that changes something.

Call it inside the transaction of the change (services are ``@transaction.atomic``; a view calling a
service then this should wrap both in ``transaction.atomic()``), so a refused action leaves no line.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils.translation import gettext_lazy

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


#: How the activity log page names each action; an action missing here is shown as its code.
#: Portal modules add the actions they record.
ACTION_LABELS: dict[str, Any] = {
    "application.start": gettext_lazy("Opened the merchant application"),
    "application.update": gettext_lazy("Edited the merchant application"),
    "application.submit": gettext_lazy("Submitted the application for review"),
    "team.invite": gettext_lazy("Invited a member"),
    "team.invite_revoke": gettext_lazy("Revoked an invitation"),
    "team.join": gettext_lazy("Joined the team"),
    "team.role_change": gettext_lazy("Changed a member's role"),
    "team.remove": gettext_lazy("Removed a member"),
    "api_key.create": gettext_lazy("Created an API key"),
    "api_key.revoke": gettext_lazy("Revoked an API key"),
    "webhook.create": gettext_lazy("Added a webhook endpoint"),
    "webhook.update": gettext_lazy("Edited a webhook endpoint"),
    "webhook.rotate_secret": gettext_lazy("Rotated a webhook signing secret"),
    "webhook.redeliver": gettext_lazy("Sent a webhook again"),
    "listing.create": gettext_lazy("Created a listing"),
    "listing.update": gettext_lazy("Edited a listing"),
    "listing.pause": gettext_lazy("Paused a listing"),
    "listing.resume": gettext_lazy("Resumed a listing"),
    "listing.import": gettext_lazy("Imported listings"),
    "order.complete": gettext_lazy("Completed an order"),
    "order.lower": gettext_lazy("Lowered an order's amount"),
    "order.cancel": gettext_lazy("Cancelled an order"),
    "order.refund": gettext_lazy("Refunded an order"),
    "order.collect": gettext_lazy("Collected an order again"),
    "order.paid_elsewhere": gettext_lazy("Marked an order paid elsewhere"),
    "order.export": gettext_lazy("Exported orders"),
    "dispute.respond": gettext_lazy("Answered a dispute"),
    "campaign.create": gettext_lazy("Created a campaign"),
    "campaign.pause": gettext_lazy("Paused a campaign"),
    "campaign.resume": gettext_lazy("Resumed a campaign"),
    "campaign.end": gettext_lazy("Ended a campaign"),
}


def action_label(action: str) -> str:
    """The translated name of an activity action, or the action code itself when it has none."""
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action
