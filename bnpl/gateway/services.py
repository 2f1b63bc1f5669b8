"""Writes on the sandbox provider's data: funding sources and the fault switch.

These stand in for what a consumer would do at their bank (add a card, freeze it)
and what an operator of a test environment does (switch faults on); the platform's
own flows never call them.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils.translation import gettext as _

from bnpl.exceptions import ValidationFailed
from bnpl.gateway.faults import SandboxFaults, sandbox_faults_load
from bnpl.models import SandboxFaultConfig, SandboxFundingSource
from bnpl.money import MoneyError, parse_money
from consumers.models import Consumer


@transaction.atomic
def sandbox_funding_source_add(
    *,
    actor: AbstractBaseUser | None,
    consumer: Consumer,
    label: str,
    balance_amount: Decimal | str,
    is_default: bool = False,
) -> SandboxFundingSource:
    """Give a consumer a simulated card or wallet (e.g. "招商银行储蓄卡(1234)") with a balance.

    The consumer's first source becomes the default whatever ``is_default`` says, so
    a consumer with sources always has one to charge. Making a new source the default
    demotes the old one; the consumer row is locked so two concurrent adds cannot both
    become the default.
    """
    label = (label or "").strip()
    if not label or len(label) > 64:
        raise ValidationFailed(_("Give the funding source a name of 1 to 64 characters."), fields={"label": "invalid"})
    try:
        balance = parse_money(balance_amount)
    except MoneyError as exc:
        raise ValidationFailed(
            _("The balance must be an amount of at least ¥0.00."), fields={"balance_amount": str(exc)}
        ) from exc
    Consumer.objects.select_for_update().filter(pk=consumer.pk).first()
    sources = SandboxFundingSource.objects.filter(consumer=consumer)
    make_default = is_default or not sources.filter(is_default=True).exists()
    if make_default:
        sources.filter(is_default=True).update(is_default=False)
    return SandboxFundingSource.objects.create(
        consumer=consumer, label=label, balance_amount=balance, is_default=make_default
    )


def sandbox_funding_source_default(consumer: Consumer) -> SandboxFundingSource | None:
    """The source a charge for this consumer goes to: their default one, or None when they have none."""
    return SandboxFundingSource.objects.filter(consumer=consumer, is_default=True).first()


@transaction.atomic
def sandbox_funding_source_top_up(
    *, actor: AbstractBaseUser | None, source: SandboxFundingSource, amount: Decimal | str
) -> SandboxFundingSource:
    """Pay money into a source (the consumer's salary arrives, or they move money onto the card).

    Added in one ``UPDATE … SET balance = balance + amount``, so a top-up racing a charge on the same source
    loses neither. ``manage.py simulate`` is its caller: simulated consumers fund their cards this way.
    """
    try:
        value = parse_money(amount, allow_zero=False)
    except MoneyError as exc:
        raise ValidationFailed(_("A top-up is an amount above ¥0.00."), fields={"amount": str(exc)}) from exc
    SandboxFundingSource.objects.filter(pk=source.pk).update(balance_amount=F("balance_amount") + value)
    source.refresh_from_db(fields=["balance_amount"])
    return source


@transaction.atomic
def sandbox_funding_source_set_frozen(
    *, actor: AbstractBaseUser | None, source: SandboxFundingSource, frozen: bool
) -> SandboxFundingSource:
    """Freeze or unfreeze a source (the bank froze the card); charges on a frozen one are declined."""
    SandboxFundingSource.objects.filter(pk=source.pk).update(frozen=frozen)
    source.refresh_from_db(fields=["frozen"])
    return source


@transaction.atomic
def sandbox_faults_set(
    *,
    actor: AbstractBaseUser | None,
    latency_ms: int = 0,
    timeout_rate: Decimal | str = "0",
    lost_response_rate: Decimal | str = "0",
    error_rate: Decimal | str = "0",
    risk_reject_rate: Decimal | str = "0",
    seed: int = 0,
) -> SandboxFaults:
    """Switch the sandbox's faults, for every process at once; fields not given are turned off.

    Rates are shares of requests from 0 to 1 (1 = every request). Calling it with no
    arguments switches every fault off.
    """
    rates = {
        "timeout_rate": timeout_rate,
        "lost_response_rate": lost_response_rate,
        "error_rate": error_rate,
        "risk_reject_rate": risk_reject_rate,
    }
    values: dict[str, object] = {}
    for name, rate in rates.items():
        try:
            value = Decimal(str(rate))
        except ArithmeticError:
            value = Decimal(-1)
        if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
            raise ValidationFailed(_("A fault rate is a share between 0 and 1."), fields={name: "invalid"})
        values[name] = value.quantize(Decimal("0.0001"))
    if int(latency_ms) < 0:
        raise ValidationFailed(_("Latency cannot be negative."), fields={"latency_ms": "invalid"})
    values.update(latency_ms=int(latency_ms), seed=int(seed))
    SandboxFaultConfig.objects.update_or_create(pk=SandboxFaultConfig.SINGLETON_PK, defaults=values)
    return sandbox_faults_load()
