"""Due-date extensions: the consumer pushes an unpaid order's charge back, once per order.

Klarna lets a buyer extend a due date; here the scenario policy says by how much
(``ScenarioPolicy.due_date_extension_days``, 0 = not offered). An extension is possible
while nothing has been taken and the order is not overdue: ``completed`` (the charge is
waiting for its due time) or ``collecting`` (a charge failed; the retries wait until
the new date). It moves ``due_at`` — which the charge run's claim, the overdue
classification (``due_at`` + grace period) and the days past due all read — and, for a
collecting order, the next attempt, so the charge run leaves the order alone until then.

"Once per order" is an order event (``data.event == "due_date_extended"``) checked
under the order's row lock, so a double click or two tabs extend once. Perks that grant
extra extensions can hook in at :func:`extensions_allowed`. The merchant hears of it by the
webhook ``order.due_date_extended`` (the order, with ``previous_due_at``): its money arrives later.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from consumers.models import Consumer
from consumers.rewards import perk_free_extension_available, perk_free_extension_use
from merchants.services import webhook_event_enqueue

from .choices import ActorKind, OrderStatus
from .exceptions import InvalidTransition, NotAllowed
from .models import CreditOrder, OrderEvent
from .overdue import grace_period_for
from .policies import policy_for
from .services import _lock_order
from .webhooks import consumer_livemode, order_payload

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    Actor = AbstractBaseUser | None

S = OrderStatus
EXTENDABLE = frozenset({S.COMPLETED, S.COLLECTING})
EXTENSION_EVENT = "due_date_extended"


def extension_days(order: CreditOrder) -> int:
    """How many days the order's scenario lets its due date move (0: no extension offered)."""
    return policy_for(order.scenario).due_date_extension_days


def extensions_allowed(order: CreditOrder) -> int:
    """How many extensions the order may have in all: one, plus the rewards level's free one of this quarter.

    The 守约激励 perk (``consumers.rewards``): 守约达人 and 守约之星 may extend one order a
    second time per calendar quarter; using it is recorded by ``perk_free_extension_use``.
    """
    if order.consumer_id is not None and perk_free_extension_available(order.consumer):  # type: ignore[arg-type]
        return 2
    return 1


def extensions_used(order: CreditOrder) -> int:
    """How many times the order's due date was extended (its events say; reads prefetched events when loaded)."""
    cache = getattr(order, "_prefetched_objects_cache", {})
    if "events" in cache:
        return sum(1 for e in cache["events"] if (e.data or {}).get("event") == EXTENSION_EVENT)
    return OrderEvent.objects.filter(order=order, data__event=EXTENSION_EVENT).count()


def extension_refusal(order: CreditOrder) -> NotAllowed | InvalidTransition | None:
    """Why the order's due date cannot be extended now, or None when it can (also used by the pages)."""
    if extension_days(order) <= 0:
        return NotAllowed(
            _("Due-date extensions are not offered for %(scenario)s.") % {"scenario": order.get_scenario_display()},
            code="extension_not_offered",
        )
    if order.status not in EXTENDABLE or order.due_at is None or _past_grace(order):
        return InvalidTransition(
            _("The due date can be extended only before the order is charged and while it is not overdue."),
            code="extension_not_now",
        )
    if extensions_used(order) >= extensions_allowed(order):
        return NotAllowed(_("The due date of this order has already been extended."), code="extension_used")
    if order.charge_in_flight:
        return NotAllowed(
            _("A charge of this order is in progress; try again when it is settled."), code="charge_in_progress"
        )
    return None


def _past_grace(order: CreditOrder) -> bool:
    """A collecting order past its grace period is overdue in all but name (the daily job has not run yet):
    extending it would let it escape the breach. The level's longer grace counts (``grace_period_for``)."""
    if order.status != S.COLLECTING or order.due_at is None:
        return False
    now = timezone.now()
    if now < order.due_at + settings.BNPL_GRACE_PERIOD:
        return False  # within the platform's grace: no need to read the consumer's level
    return now >= order.due_at + grace_period_for(order.consumer_id)


@transaction.atomic(durable=True)
def credit_order_extend_due_date(*, actor: Actor, order: CreditOrder, consumer: Consumer | None = None) -> CreditOrder:
    """Move an unpaid order's due date back by its scenario's extension days, once per order.

    ``consumer``, when given, must own the order (the portal passes the signed-in one).
    Refused, changing nothing, when the scenario offers no extension, the order is not
    ``completed`` or ``collecting``, it was extended already, or a charge is in flight.
    Writes an order event (same status, ``data.event = "due_date_extended"`` with the old
    and new dates) naming the actor.
    """
    order = _lock_order(order)
    if consumer is not None and order.consumer_id != consumer.pk:
        raise NotAllowed(_("This order belongs to someone else."), code="wrong_consumer")
    refusal = extension_refusal(order)
    if refusal is not None:
        raise refusal
    assert order.due_at is not None  # extension_refusal refuses an order without one
    if extensions_used(order) >= 1:
        # Beyond the one every order has: the level's free extension, used in this transaction.
        perk_free_extension_use(actor=actor, consumer=order.consumer, order_id=order.pk)  # type: ignore[arg-type]
    days = extension_days(order)
    old_due = order.due_at
    order.due_at = old_due + timedelta(days=days)
    fields = ["due_at", "updated_at"]
    if order.status == S.COLLECTING:
        # The retries wait for the new date too: an extension is a promise not to charge before it.
        order.next_attempt_at = max(order.next_attempt_at or order.due_at, order.due_at)
        fields.append("next_attempt_at")
    order.save(update_fields=fields)
    event = OrderEvent.objects.create(
        order=order,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_kind=ActorKind.CONSUMER,
        from_status=order.status,
        to_status=order.status,
        reason=ngettext("Due date extended by %(days)d day", "Due date extended by %(days)d days", days)
        % {"days": days},
        data={"event": EXTENSION_EVENT, "days": days, "from": old_due.isoformat(), "to": order.due_at.isoformat()},
    )
    _extension_webhook(order=order, event=event, previous_due_at=old_due)
    return order


def _extension_webhook(*, order: CreditOrder, event: OrderEvent, previous_due_at: datetime) -> None:
    """Tell the merchant (``order.due_date_extended``, in this transaction): its money arrives later."""
    payload = order_payload(order)
    payload["previous_due_at"] = timezone.localtime(previous_due_at).isoformat()
    payload["occurred_at"] = timezone.localtime(event.created_at).isoformat()
    webhook_event_enqueue(
        merchant_id=order.merchant_id,
        event_type="order.due_date_extended",
        payload=payload,
        ordering_key=f"order:{order.pk}",
        livemode=lambda: consumer_livemode(order.consumer_id),
    )
