"""The simulated merchants and consumers, created through the same services as seed_demo's.

Everything a run creates carries its prefix ``sim<seed>``: the merchants' owners ``sim7-merchant-ebike`` …
(password ``demo1234``, like seed_demo's, so the merchant portal can be opened on the result), the consumers
``sim7-c00001`` … with phones ``177<seed mod 1000><index>`` and no usable password (they never log in), and the
orders ``SIM7-0000001`` …. Nothing else is touched, so a run can sit beside seed_demo's data or another run
with another seed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test.utils import override_settings
from stdnum.cn import ric

from bnpl.exceptions import ValidationFailed
from bnpl.gateway.services import sandbox_funding_source_add
from bnpl.management.commands.seed_demo import GIVEN, MERCHANTS, SURNAMES, _uscc, merchant_from_spec
from bnpl.models import SandboxFundingSource
from consumers import services as consumer_services
from consumers.models import Consumer
from merchants.choices import ConfirmMode, MemberRole
from merchants.models import Listing, Merchant

from .population import SALARY_BALANCE, Person


def merchant_seq(seed: int, number: int) -> int:
    """seed_demo's sequence number (USCC and contact phone, four digits) of a run's ``number``-th merchant.

    Far above seed_demo's own (1–6), one block of ten per seed; seeds 300 apart share a block, which
    :func:`run_exists` catches.
    """
    return 7000 + (seed % 300) * 10 + number


def run_prefix(seed: int) -> str:
    """The prefix of every login a run with ``seed`` creates (``sim7``); orders use it upper-cased."""
    return f"sim{seed}"


@dataclass(frozen=True)
class SimMerchant:
    merchant: Merchant
    owner: object  # the owner's User
    listings: tuple[Listing, ...]  # its confirm-each-time listings, the ones simulated consumers order from


def build_merchants(*, seed: int, admin: object) -> dict[str, SimMerchant]:
    """One merchant per scenario, from seed_demo's specs under this run's prefix; keyed by scenario."""
    prefix = run_prefix(seed)
    built = {}
    for number, spec in enumerate(MERCHANTS, start=1):
        sim_spec = replace(
            spec,
            username=f"{prefix}-{spec.username}",
            seq=merchant_seq(seed, number),
            display_name=f"{spec.display_name}·模拟",
        )
        merchant = merchant_from_spec(sim_spec, admin)
        owner = merchant.members.get(role=MemberRole.OWNER).user
        listings = tuple(merchant.listings.filter(confirm_mode=ConfirmMode.EACH_TIME).order_by("id"))
        built[spec.scenario] = SimMerchant(merchant=merchant, owner=owner, listings=listings)
    return built


def _resident_id(seed: int, index: int) -> str:
    """A valid resident ID, unique within a run and apart from seed_demo's (whose sequence digits stay below 500).

    Hangzhou's 330106 (the area code must have existed at the birth date), born 1985–1996.
    """
    birth = date(1985, 1, 1) + timedelta(days=(seed % 20) * 200 + index // 500)
    body = f"330106{birth:%Y%m%d}{500 + index % 500:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects a placeholder check digit


def consumer_phone(seed: int, index: int) -> str:
    return f"177{seed % 1000:03d}{index:05d}"


def build_consumers(*, seed: int, people: list[Person]) -> tuple[dict[int, Consumer], dict[int, SandboxFundingSource]]:
    """Register, verify and give a card to each person; returns their consumers and cards by person index.

    Registration hashes a password, which at the production hasher's cost would take minutes for thousands of
    people who never log in: it runs with the fast MD5 hasher, and the passwords are then made unusable.
    """
    prefix = run_prefix(seed)
    consumers: dict[int, Consumer] = {}
    sources: dict[int, SandboxFundingSource] = {}
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        for person in people:
            consumer = consumer_services.consumer_register(
                actor=None,
                phone=consumer_phone(seed, person.index),
                password=f"{prefix}-never-used-{person.index:05d}!Q",
                username=f"{prefix}-c{person.index:05d}",
                city="杭州",
                score=person.score,
            )
            user = consumer.user  # kept: the verified consumer below is re-read without it
            if person.verified:
                name = SURNAMES[person.index % len(SURNAMES)] + GIVEN[(person.index // len(SURNAMES)) % len(GIVEN)]
                # A number taken by a run whose seed shares its block is refused: this person stays unverified.
                with contextlib.suppress(ValidationFailed):
                    consumer = consumer_services.consumer_verify_identity(
                        actor=user,
                        consumer=consumer,
                        real_name=name,
                        id_number=_resident_id(seed, person.index),
                    )
                    consumer.user = user
            sources[person.index] = sandbox_funding_source_add(
                actor=user,
                consumer=consumer,
                label=f"模拟银行卡({person.index % 10000:04d})",
                balance_amount=SALARY_BALANCE if person.risk.funded else Decimal("0.00"),
            )
            consumers[person.index] = consumer
    get_user_model().objects.filter(username__startswith=f"{prefix}-c").update(password=make_password(None))
    return consumers, sources


def run_exists(seed: int) -> bool:
    """Whether a run with this seed (or one sharing its merchant numbers) already left its data here."""
    if get_user_model().objects.filter(username__startswith=f"{run_prefix(seed)}-").exists():
        return True
    return Merchant.objects.filter(uscc=_uscc(merchant_seq(seed, 1))).exists()
