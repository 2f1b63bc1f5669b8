"""Writes of the notifications app: notify someone, deliver what is due, mark read, save preferences.

``notify`` is the one entry point: it renders the template in every language (strictly), writes the inbox
entry and one delivery per outbound channel in one transaction, and never talks to a provider. Sending is
the delivery job's work (:func:`deliver_due`), outside any transaction, so a slow or failing email or SMS
provider can never hold a lock, block an order or fail a reminder sweep: it only leaves deliveries
``retrying`` and, after ``BNPL_NOTIFY_MAX_ATTEMPTS``, ``failed`` (visible in the admin).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from bnpl.exceptions import ValidationFailed

from .backends import get_sms_backend
from .kinds import CONSUMER, MERCHANT, kind_spec
from .models import (
    OUTBOUND_CHANNELS,
    Channel,
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationPreference,
    RecipientSettings,
)
from .rendering import render_all

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from bnpl.models import CreditOrder
    from consumers.models import Consumer
    from merchants.models import MerchantMember

logger = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
# A claimed delivery whose worker died is taken again after this lease (it may then be sent twice: at least once).
SEND_LEASE = timedelta(minutes=10)
# A delivery job stops claiming new batches after this long, well below django-q's task timeout (Q_TIMEOUT).
DELIVERY_RUN_BUDGET = timedelta(minutes=3)


def send_timeout() -> timedelta:
    """The longest one send may take: the SMTP timeout (``EMAIL_TIMEOUT``), at least 10 seconds."""
    options = settings.MAILERS.get("default", {}).get("OPTIONS", {}) if hasattr(settings, "MAILERS") else {}
    return timedelta(seconds=max(int(options.get("timeout") or 0), 10))


def claim_batch_size() -> int:
    """How many deliveries one claim may take so that all are sent well within their lease.

    Sends are sequential, so a batch of ``n`` may take ``n × send_timeout``; half the lease is kept
    as a margin (batch × timeout < lease / 2). Beyond that another worker would take the rows again
    and send them twice.
    """
    return max(1, int((SEND_LEASE / 2) / send_timeout()))


# ------------------------------------------------------------------------------------------------ quiet hours


def quiet_hours_end(moment: datetime) -> datetime | None:
    """When the SMS quiet hours around ``moment`` end (08:00 Beijing time), or None outside them."""
    start, end = settings.BNPL_SMS_QUIET_HOURS
    if start == end:
        return None
    local = moment.astimezone(BEIJING)
    in_quiet = local.hour >= start or local.hour < end if start > end else start <= local.hour < end
    if not in_quiet:
        return None
    day = local.date() if local.hour < end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(hour=end), tzinfo=BEIJING)


# ------------------------------------------------------------------------------------------------ notify


def recipient_language(user: AbstractBaseUser) -> str:
    """The language the person reads messages in (their setting, else the platform's default)."""
    return _recipients([user])[user.pk][0]


def _recipients(users: Sequence[AbstractBaseUser]) -> dict[int, tuple[str, str]]:
    """Each person's message language and email address, by user id (one query for all of them)."""
    chosen = {
        user_id: (language, email)
        for user_id, language, email in RecipientSettings.objects.filter(
            user_id__in={user.pk for user in users}
        ).values_list("user_id", "language", "email")
    }
    found = {}
    for user in users:
        language, email = chosen.get(user.pk, ("", ""))
        found[user.pk] = (language or settings.LANGUAGE_CODE, email or getattr(user, "email", "") or "")
    return found


@dataclass(frozen=True)
class NotifyRequest:
    """One message for :func:`notify_many`: the arguments of :func:`notify` but ``actor`` and ``now``."""

    key: str
    data: Mapping[str, Any]
    dedupe_key: str
    consumer: Consumer | None = None
    member: MerchantMember | None = None
    order: CreditOrder | None = None


def notify(
    *,
    actor: AbstractBaseUser | None = None,
    key: str,
    data: Mapping[str, Any],
    dedupe_key: str,
    consumer: Consumer | None = None,
    member: MerchantMember | None = None,
    order: CreditOrder | None = None,
    now: datetime | None = None,
) -> Notification | None:
    """Notify a consumer or a merchant member with template ``key`` and ``data``; None if already notified.

    ``dedupe_key`` names the order and moment (``charge_upcoming:order:42:120h``): a second call with the
    same key writes nothing, whoever makes it and however concurrently (the unique constraint decides).
    Raises :class:`~bnpl.notifications.kinds.UnknownNotificationKind` for an undeclared key and
    :class:`~bnpl.notifications.rendering.NotificationTemplateError` for missing data — loudly, always.
    The inbox entry is always written; email and SMS deliveries are written ``pending`` (SMS in quiet hours
    waits until 08:00 unless the kind is exempt), or ``skipped`` with the reason when the person switched the
    channel off (never for a mandatory kind) or has no address for it.
    """
    request = NotifyRequest(key=key, data=data, dedupe_key=dedupe_key, consumer=consumer, member=member, order=order)
    [outcome] = notify_many([request], now=now)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


@dataclass
class _Prepared:
    request: NotifyRequest
    notification: Notification
    deliveries: list[Delivery]


def notify_many(
    requests: Sequence[NotifyRequest], *, now: datetime | None = None
) -> list[Notification | Exception | None]:
    """:func:`notify` for many messages at once: the same rows, in a handful of statements for all of them.

    The reminder sweeps write hundreds of notifications a run; one by one, each cost six statements (the
    recipient's language, their switched-off channels, a savepoint, two inserts, its release). Here the
    recipients and preferences are read in one query each and the notifications and deliveries inserted in
    one statement each, in one transaction.

    Returns one outcome per request, in order: the notification, None when the key was already notified, or
    the exception that request raised (unknown kind, wrong audience, missing data: see :func:`notify`), so that
    one bad request never stops the others; :func:`notify` raises it. A dedupe key taken meanwhile by another
    worker (or twice in ``requests``), or any row the database refuses, makes the batch insert fail: the batch
    is then written one request at a time, each in its own savepoint, exactly as :func:`notify` would.
    """
    now = now or timezone.now()
    outcomes: list[Notification | Exception | None] = [None] * len(requests)
    valid: list[tuple[int, NotifyRequest, dict[str, dict[str, str]]]] = []
    for index, request in enumerate(requests):
        try:
            spec = kind_spec(request.key)
            if (request.consumer is None) == (request.member is None):
                raise ValueError("notify() takes exactly one of consumer and member")
            if (spec.audience == CONSUMER and request.consumer is None) or (
                spec.audience == MERCHANT and request.member is None
            ):
                raise ValueError(f"notification {request.key!r} is for a {spec.audience}")
            # Render before anything else: a template or data error raises before any row is written. The sweeps
            # select only rows without a notification, so the duplicate case is the rare race settled below.
            valid.append((index, request, render_all(request.key, request.data)))
        except Exception as exc:  # handed back in the request's place; notify() raises it
            outcomes[index] = exc
    if not valid:
        return outcomes
    users = [_user_of(request) for _index, request, _texts in valid]
    recipients = _recipients(users)
    switched_off: dict[tuple[int, str], set[str]] = {}
    for user_id, kind, channel in NotificationPreference.objects.filter(
        user_id__in={user.pk for user in users}, kind__in={request.key for _i, request, _t in valid}, enabled=False
    ).values_list("user_id", "kind", "channel"):
        switched_off.setdefault((user_id, kind), set()).add(channel)
    prepared = [
        (index, _prepare(request, user, texts, recipients[user.pk], switched_off, now))
        for (index, request, texts), user in zip(valid, users, strict=True)
    ]
    try:
        with transaction.atomic():
            notifications = Notification.objects.bulk_create([item.notification for _index, item in prepared])
            for (_index, item), notification in zip(prepared, notifications, strict=True):
                for delivery in item.deliveries:
                    delivery.notification = notification
            Delivery.objects.bulk_create([delivery for _index, item in prepared for delivery in item.deliveries])
    except DatabaseError:
        # A key notified meanwhile (or a row the database refuses): write each on its own, so that only that
        # request is left out, as when each was written by notify().
        for index, item in prepared:
            item.notification.pk = None  # the rolled-back insert may have numbered it
            try:
                outcomes[index] = _write_one(item)
            except Exception as exc:
                outcomes[index] = exc
        return outcomes
    for index, item in prepared:
        outcomes[index] = item.notification
    return outcomes


def _user_of(request: NotifyRequest) -> AbstractBaseUser:
    return request.consumer.user if request.consumer is not None else request.member.user


def _prepare(
    request: NotifyRequest,
    user: AbstractBaseUser,
    texts: dict[str, dict[str, str]],
    recipient: tuple[str, str],
    switched_off: dict[tuple[int, str], set[str]],
    now: datetime,
) -> _Prepared:
    """The unsaved notification and deliveries of one request."""
    spec = kind_spec(request.key)
    language, email = recipient
    own = texts.get(language) or texts[settings.LANGUAGE_CODE]
    stored_data = DjangoJSONEncoder().encode(dict(request.data))
    consumer = request.consumer
    notification = Notification(
        user=user,
        consumer=consumer,
        member=request.member,
        order=request.order,
        kind=request.key,
        mandatory=spec.mandatory,
        dedupe_key=request.dedupe_key,
        language=language,
        subject=own["subject"][:200],
        body=own["body"],
        rendered=texts,
        data=json.loads(stored_data),
        created_at=now,
    )
    addresses = {Channel.EMAIL: email, Channel.SMS: consumer.phone if consumer is not None else ""}
    off = switched_off.get((user.pk, request.key), set())
    deliveries = []
    for channel in OUTBOUND_CHANNELS:
        delivery = Delivery(notification=notification, channel=channel, address=addresses[channel])
        if channel in off and not spec.mandatory:
            delivery.status, delivery.last_error = DeliveryStatus.SKIPPED, "switched off by the recipient"
        elif not delivery.address:
            delivery.status, delivery.last_error = DeliveryStatus.SKIPPED, f"no {channel} address"
        else:
            delivery.next_attempt_at = now
            if channel == Channel.SMS and not spec.quiet_hours_exempt:
                delivery.next_attempt_at = quiet_hours_end(now) or now
        deliveries.append(delivery)
    return _Prepared(request=request, notification=notification, deliveries=deliveries)


def _write_one(item: _Prepared) -> Notification | None:
    """Write one prepared notification and its deliveries in a savepoint; None when its key is taken."""
    try:
        with transaction.atomic():
            item.notification.save(force_insert=True)
            for delivery in item.deliveries:
                delivery.notification = item.notification
            Delivery.objects.bulk_create(item.deliveries)
    except IntegrityError:
        item.notification.pk = None
        if Notification.objects.filter(dedupe_key=item.request.dedupe_key).exists():
            return None  # already notified (a concurrent or earlier run wrote it)
        raise
    return item.notification


# ------------------------------------------------------------------------------------------------ delivery


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed, "deferred": self.deferred}


def _retry_delay(attempts: int) -> timedelta:
    delays = settings.BNPL_NOTIFY_RETRY_DELAYS
    return delays[min(attempts, len(delays)) - 1]


def _send(delivery: Delivery) -> str:
    notification = delivery.notification
    texts = notification.text_for(notification.language)
    if delivery.channel == Channel.EMAIL:
        EmailMessage(
            subject=texts["subject"], body=texts["body"], from_email=settings.DEFAULT_FROM_EMAIL, to=[delivery.address]
        ).send(fail_silently=False)
        return ""
    return get_sms_backend().send(to=delivery.address, text=texts["sms"] or texts["subject"])


def deliver_due(*, now: datetime | None = None, limit: int = 200, batch_size: int | None = None) -> DeliveryReport:
    """Send the email and SMS deliveries that are due; retry failures with back-off; never raise for a provider.

    Works in batches of at most ``batch_size`` rows (default :func:`claim_batch_size`, so a batch is sent
    well within its lease even if every send times out), up to ``limit`` rows and for at most
    ``DELIVERY_RUN_BUDGET`` (below django-q's timeout). Each batch is claimed with ``SKIP LOCKED`` (so
    several workers share the work), marked ``sending`` with a lease and committed; the providers are then
    called with no transaction open and each outcome recorded on its own. A row whose lease would run out
    before its turn is given back unsent. An SMS that comes due in quiet hours is moved to 08:00.
    """
    report = DeliveryReport()
    size = max(1, batch_size or claim_batch_size())
    started = timezone.now()
    taken = 0
    while taken < limit and timezone.now() - started < DELIVERY_RUN_BUDGET:
        claimed_count, finished = _deliver_batch(
            now=now or timezone.now(), limit=min(size, limit - taken), report=report
        )
        if claimed_count == 0 or not finished:
            break  # nothing due, or sends too slow for the lease: the next run goes on
        taken += claimed_count
    return report


def _deliver_batch(*, now: datetime, limit: int, report: DeliveryReport) -> tuple[int, bool]:
    """Claim up to ``limit`` due rows, send them, record each.

    Returns how many rows were taken (0: none due) and whether all claimed rows were sent (False when
    some were given back because their lease would have run out).
    """
    claimed: list[Delivery] = []
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("notification")
            .filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING])
            .filter(next_attempt_at__lte=now)
            .order_by("next_attempt_at", "id")[:limit]
        )
        for row in rows:
            wait_until = quiet_hours_end(now) if row.channel == Channel.SMS else None
            if wait_until and not kind_spec(row.notification.kind).quiet_hours_exempt:
                row.next_attempt_at = wait_until
                if row.status == DeliveryStatus.SENDING:
                    row.status = DeliveryStatus.RETRYING
                report.deferred += 1
            else:
                row.status = DeliveryStatus.SENDING
                row.attempts += 1
                row.next_attempt_at = now + SEND_LEASE
                claimed.append(row)
            row.updated_at = timezone.now()  # bulk_update does not apply auto_now
        Delivery.objects.bulk_update(rows, ["status", "attempts", "next_attempt_at", "updated_at"])
    lease_ends = timezone.now() + SEND_LEASE
    for index, row in enumerate(claimed):
        if timezone.now() + send_timeout() >= lease_ends:
            # The lease would run out during this send: give the rest back unsent (another run takes them).
            for rest in claimed[index:]:
                Delivery.objects.filter(pk=rest.pk, status=DeliveryStatus.SENDING, attempts=rest.attempts).update(
                    status=DeliveryStatus.RETRYING,
                    attempts=rest.attempts - 1,
                    next_attempt_at=timezone.now(),
                    updated_at=timezone.now(),
                )
            return len(rows), False
        try:
            reference = _send(row)
        except Exception as exc:  # any provider failure: record it, never let it stop the run
            logger.warning("Notification delivery %s (%s) failed: %s", row.pk, row.channel, exc)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if row.attempts >= settings.BNPL_NOTIFY_MAX_ATTEMPTS:
                values = {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
                report.failed += 1
            else:
                values = {"status": DeliveryStatus.RETRYING, "next_attempt_at": now + _retry_delay(row.attempts)}
                report.retrying += 1
            values["last_error"] = error
        else:
            values = {
                "status": DeliveryStatus.SENT,
                "next_attempt_at": None,
                "sent_at": timezone.now(),
                "provider_reference": (reference or "")[:120],
                "last_error": "",
            }
            report.sent += 1
        # Only the claim this worker holds: a lease taken over by another worker is theirs to record.
        Delivery.objects.filter(pk=row.pk, status=DeliveryStatus.SENDING, attempts=row.attempts).update(
            updated_at=timezone.now(), **values
        )
    return len(rows), True


# ------------------------------------------------------------------------------------------------ inbox


def notification_mark_read(
    *, actor: AbstractBaseUser, user: AbstractBaseUser, notification_id: int | None = None
) -> int:
    """Mark one of ``user``'s notifications read (or all of them, without an id); returns how many changed.

    Scoped to ``user``: someone else's notification id changes nothing.
    """
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if notification_id is not None:
        unread = unread.filter(pk=notification_id)
    return unread.update(read_at=timezone.now())


@transaction.atomic
def notification_preferences_set(
    *,
    actor: AbstractBaseUser | None,
    user: AbstractBaseUser,
    audience: str,
    enabled: Mapping[tuple[str, str], bool],
    language: str | None = None,
    email: str | None = None,
) -> None:
    """Save a person's channel choices per kind, their message language and email address.

    Mandatory kinds cannot be switched off: a choice for one is ignored (the page shows them locked).
    The inbox cannot be switched off either. Unknown kinds, kinds of another audience or unknown channels
    are refused with ``ValidationFailed``.
    """
    rows = []
    for (key, channel), on in enabled.items():
        try:
            spec = kind_spec(key)
        except LookupError:
            raise ValidationFailed(f"unknown notification kind {key!r}", fields={"kinds": key}) from None
        if spec.audience != audience or channel not in OUTBOUND_CHANNELS:
            raise ValidationFailed(f"{key}/{channel} cannot be chosen", fields={"kinds": key})
        if spec.mandatory:
            continue
        rows.append(NotificationPreference(user=user, kind=key, channel=channel, enabled=bool(on)))
    NotificationPreference.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["user", "kind", "channel"], update_fields=["enabled", "updated_at"]
    )
    if language is not None or email is not None:
        languages = {code for code, _name in settings.LANGUAGES}
        if language is not None and language not in languages:
            raise ValidationFailed(f"unknown language {language!r}", fields={"language": language})
        current = RecipientSettings.objects.filter(user=user).first()
        RecipientSettings.objects.update_or_create(
            user=user,
            defaults={
                "language": language or (current.language if current else settings.LANGUAGE_CODE),
                "email": email if email is not None else (current.email if current else ""),
            },
        )
