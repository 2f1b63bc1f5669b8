"""Demo data: four merchants (one per scenario), ~50 consumers across score bands, orders in every state.

Idempotent: every object has a natural key (username, USCC, out_order_no) and is created only when
missing, so running the command twice gives the same data. Everything goes through the services, the
way a merchant, a consumer or staff would have produced it. Two places move time on instead of waiting
for it: the confirmation deadline of the orders meant to show ``expired`` is backdated before the real
expiry service expires them, and the overdue classification of the orders meant to show ``overdue`` is
run as of three days from now (past the grace period). Completed orders of the metered scenarios are
left for the scheduler: the charge run of ``make run`` charges them within a minute.

Rewards (docs/incentives.md): the e-bike merchant runs one coupon campaign, and consumer1 and consumer2
get a history of kept promises (orders placed, billed and paid through the services): consumer1 reaches
the second level with the campaign two thirds done, consumer2 earns the coupon and has it taken off its
next charge. That history stands for weeks of orders, so a third place moves time on: before each of
those orders, the consumer's recent order times are moved back a day, out of the admission velocity
windows (at most 10 orders an hour), which a real history spread over weeks would not have met.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone
from stdnum.cn import ric, uscc

from bnpl import services as order_services
from bnpl.charging import credit_order_charge_now, credit_order_pay_now
from bnpl.choices import ActorKind, OrderStatus
from bnpl.gateway.services import sandbox_funding_source_add
from bnpl.incentives import campaign_create
from bnpl.models import Agreement, Campaign, CreditOrder, SandboxFundingSource
from bnpl.models.charging import ChargeTrigger
from bnpl.models.incentives import BenefitKind
from bnpl.overdue import credit_order_mark_overdue
from bnpl.refunds import credit_order_refund
from bnpl.staff_otp import totp_device_enrol, totp_secret_base32
from consumers import services as consumer_services
from consumers.models import Consumer
from merchants import services as merchant_services
from merchants.choices import ConfirmMode, MemberRole, MerchantCategory, Scenario
from merchants.models import Listing, Merchant
from scoring.models import ConsumerFeatures

PASSWORD = "demo1234"
User = get_user_model()

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊洋艳勇军杰娟涛明超霞平"

CAMPAIGN_TITLE = "充电满3次送¥5券"
# Kept promises of the rewards history: (consumer number, merchant username, usage quantity) in order.
# consumer1: ten swims (promise value 10 → 守约达人) and two charging sessions (campaign 2 of 3);
# consumer2: three charging sessions (the coupon), then an 8-hour one the ¥5 coupon comes off (¥8 → ¥3).
REWARD_HISTORY = (
    *((1, "merchant-swim", "1") for _ in range(10)),
    (1, "merchant-ebike", "2.5000"),
    (1, "merchant-ebike", "1.5000"),
    (2, "merchant-ebike", "2.0000"),
    (2, "merchant-ebike", "3.0000"),
    (2, "merchant-ebike", "1.2500"),
    (2, "merchant-ebike", "8.0000"),
)
CITIES = ["杭州", "上海", "北京", "深圳", "成都", "南京"]


def _uscc(seq: int) -> str:
    body = f"91330106MA2{seq:06d}"
    return body + uscc.calc_check_digit(body)


def _resident_id(seq: int, rng: random.Random) -> str:
    birth = f"{rng.randint(1985, 2003)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"330106{birth}{seq % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # stdnum expects a placeholder check digit


@dataclass(frozen=True)
class MerchantSpec:
    username: str
    seq: int
    legal_name: str
    display_name: str
    scenario: str
    city: str
    listings: tuple[dict, ...]


MERCHANTS = (
    MerchantSpec(
        "merchant-ebike",
        1,
        "杭州小驴充电科技有限公司",
        "小驴充电",
        Scenario.EBIKE_CHARGING,
        "杭州",
        (
            {
                "title": "电动车充电（按小时计费）",
                "max_amount": "20.00",
                "min_score": 550,
                "confirm_mode": ConfirmMode.EACH_TIME,
                "pricing_rule": {
                    "kind": "per_unit",
                    "unit": "hour",
                    "unit_price": "1.00",
                    "cap_per_24h": "10.00",
                    "round_up": True,
                },
            },
            {
                "title": "充电免确认服务",
                "max_amount": "30.00",
                "min_score": 600,
                "confirm_mode": ConfirmMode.AGREEMENT,
                "pricing_rule": {
                    "kind": "per_unit",
                    "unit": "hour",
                    "unit_price": "1.00",
                    "cap_per_24h": "10.00",
                    "round_up": True,
                },
            },
        ),
    ),
    MerchantSpec(
        "merchant-express",
        2,
        "上海顺达速运有限公司",
        "顺达速运",
        Scenario.EXPRESS_DELIVERY,
        "上海",
        (
            {
                "title": "先寄后付 · 同城快递",
                "max_amount": "100.00",
                "min_score": 550,
                "confirm_mode": ConfirmMode.EACH_TIME,
                "pricing_rule": {
                    "kind": "express",
                    "first_weight_kg": "1",
                    "first_weight_fee": "12.00",
                    "additional_per_kg": "2.00",
                    "packaging_fee": "3.00",
                    "insurance_rate": "0.005",
                    "insurance_min_fee": "1.00",
                },
            },
            {
                "title": "先寄后付 · 寄件授权",
                "max_amount": "150.00",
                "min_score": 600,
                "confirm_mode": ConfirmMode.AGREEMENT,
                "pricing_rule": {
                    "kind": "express",
                    "first_weight_kg": "1",
                    "first_weight_fee": "12.00",
                    "additional_per_kg": "2.00",
                },
            },
        ),
    ),
    MerchantSpec(
        "merchant-swim",
        3,
        "杭州西湖游泳健身有限公司",
        "西湖游泳健身",
        Scenario.SWIMMING_FITNESS,
        "杭州",
        (
            {
                "title": "游泳单次",
                "max_amount": "50.00",
                "min_score": 550,
                "confirm_mode": ConfirmMode.EACH_TIME,
                "pricing_rule": {"kind": "per_unit", "unit": "visit", "unit_price": "35.00"},
            },
            {
                "title": "健身房按分钟计费",
                "max_amount": "100.00",
                "min_score": 600,
                "confirm_mode": ConfirmMode.AGREEMENT,
                "pricing_rule": {
                    "kind": "tiered",
                    "unit": "minute",
                    "tiers": [{"up_to": "60", "unit_price": "0.50"}, {"up_to": None, "unit_price": "0.30"}],
                    "free_units": "10",
                },
            },
        ),
    ),
    MerchantSpec(
        "merchant-live",
        4,
        "杭州好物直播电子商务有限公司",
        "好物直播间",
        Scenario.LIVE_SHOPPING,
        "杭州",
        (
            {
                "title": "五常有机大米 5kg",
                "max_amount": "89.00",
                "min_score": 550,
                "confirm_mode": ConfirmMode.EACH_TIME,
                "pricing_rule": {"kind": "fixed", "price": "89.00"},
            },
            {
                "title": "羊毛围巾",
                "max_amount": "199.00",
                "min_score": 650,
                "confirm_mode": ConfirmMode.EACH_TIME,
                "pricing_rule": {"kind": "fixed", "price": "199.00"},
            },
        ),
    ),
)


def merchant_from_spec(spec: MerchantSpec, admin) -> Merchant:
    """The approved merchant of ``spec`` with its owner and listings, created through the services when missing.

    Shared with ``manage.py simulate`` (bnpl/simulation/world.py), which builds its own merchants from these specs.
    """
    code = _uscc(spec.seq)
    merchant = Merchant.objects.filter(uscc=code).first()
    if merchant is not None:
        return merchant
    owner = User.objects.filter(username=spec.username).first() or User.objects.create_user(
        spec.username, f"{spec.username}@example.com", PASSWORD
    )
    merchant = merchant_services.merchant_create(
        actor=owner,
        legal_name=spec.legal_name,
        display_name=spec.display_name,
        uscc=code,
        legal_representative="张伟",
        contact_name="李娜",
        contact_phone=f"1390000{spec.seq:04d}",
        contact_email=f"{spec.username}@example.com",
        city=spec.city,
        categories=[spec.scenario],
        settlement_bank_name="招商银行杭州分行",
        settlement_account_name=spec.legal_name,
        settlement_account_number=f"62258801234{spec.seq:05d}",
    )
    if not merchant.members.filter(user=owner).exists():
        merchant_services.member_add(actor=admin, merchant=merchant, user=owner, role=MemberRole.OWNER)
    for listing in spec.listings:
        merchant_services.listing_create(actor=owner, merchant=merchant, scenario=spec.scenario, **listing)
    merchant_services.merchant_submit(actor=owner, merchant=merchant)
    merchant_services.merchant_approve(actor=admin, merchant=merchant)
    merchant.refresh_from_db()
    return merchant


class Command(BaseCommand):
    help = "Load idempotent demo data (merchants, listings, consumers, orders in every state). Password: demo1234."

    def handle(self, *args, **options) -> None:
        rng = random.Random(20261125)  # fixed seed: the same names, scores and IDs on every machine
        admin = self._admin()
        merchants = {spec.username: self._merchant(spec, admin) for spec in MERCHANTS}
        self._pending_merchants(admin)
        consumers = self._consumers(rng, admin)
        self._orders(rng, merchants, consumers)
        self._rewards(merchants, consumers)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {Merchant.objects.count()} merchants, {Listing.objects.count()} listings, "
                f"{Consumer.objects.count()} consumers, {CreditOrder.objects.count()} orders. "
                f"Logins: admin, merchant-ebike, merchant-express, merchant-swim, merchant-live, consumer1…consumer5 "
                f"(password {PASSWORD})."
            )
        )
        self._admin_second_factor(admin)

    # --- people and merchants

    def _admin(self):
        user = User.objects.filter(username="admin").first()
        if user is None:
            user = User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
        return user

    def _admin_second_factor(self, admin) -> None:
        """The admin asks for a TOTP token (docs/security.md): enrol the demo admin once and say how to log in."""
        device = totp_device_enrol(actor=None, user=admin)
        self.stdout.write(
            f"Admin second factor (TOTP): add {device.config_url} to an authenticator app "
            f"(secret {totp_secret_base32(device)}), or with DJANGO_DEBUG=1 run "
            f"`manage.py staff_totp code admin` for the current token."
        )

    def _merchant(self, spec: MerchantSpec, admin) -> Merchant:
        return merchant_from_spec(spec, admin)

    def _pending_merchants(self, admin) -> None:
        """One application awaiting review and one rejected, so the admin queue has work in it."""
        for seq, name, reject in ((5, "宁波快充新能源有限公司", False), (6, "温州闪送物流有限公司", True)):
            if Merchant.objects.filter(uscc=_uscc(seq)).exists():
                continue
            merchant = merchant_services.merchant_create(
                actor=admin,
                legal_name=name,
                display_name=name[:4],
                uscc=_uscc(seq),
                contact_name="王芳",
                contact_phone=f"1390000{seq:04d}",
                city="宁波" if seq == 5 else "温州",
                categories=[MerchantCategory.EBIKE_CHARGING if seq == 5 else MerchantCategory.EXPRESS_DELIVERY],
                settlement_bank_name="中国工商银行",
                settlement_account_name=name,
                settlement_account_number=f"62220212345{seq:05d}",
            )
            merchant_services.merchant_submit(actor=admin, merchant=merchant)
            if reject:
                merchant_services.merchant_reject(
                    actor=admin, merchant=merchant, reason="营业执照照片不清晰，请重新上传清晰完整的营业执照。"
                )

    def _consumers(self, rng: random.Random, admin) -> list[Consumer]:
        """50 consumers; consumer1…consumer5 are the demo logins, spread over the five score bands."""
        band_scores = [720, 670, 620, 570, 500]
        consumers = []
        for n in range(1, 51):
            score = (
                band_scores[n - 1]
                if n <= 5
                else rng.choice(
                    [
                        rng.randint(380, 549),
                        rng.randint(550, 599),
                        rng.randint(600, 649),
                        rng.randint(650, 699),
                        rng.randint(700, 900),
                    ]
                )
            )
            if n % 12 == 0:
                score = 660  # good record, empty card: these are the ones whose charges fail
            name = rng.choice(SURNAMES) + rng.choice(GIVEN)
            id_number = _resident_id(n, rng)
            city = rng.choice(CITIES)
            phone = f"1380013{n:04d}"
            consumer = Consumer.objects.filter(phone=phone).first()
            if consumer is None:
                consumer = consumer_services.consumer_register(
                    actor=None, phone=phone, password=PASSWORD, username=f"consumer{n}", city=city, score=score
                )
            if n % 7 != 0 and not consumer.is_verified:  # most consumers have verified their identity
                consumer = consumer_services.consumer_verify_identity(
                    actor=consumer.user, consumer=consumer, real_name=name, id_number=id_number
                )
            if not SandboxFundingSource.objects.filter(consumer=consumer).exists():
                sandbox_funding_source_add(
                    actor=consumer.user,
                    consumer=consumer,
                    label=f"招商银行储蓄卡({1000 + n})",
                    balance_amount=Decimal("0.00") if n % 12 == 0 else Decimal("800.00"),
                )
            consumers.append(consumer)
        return consumers

    # --- orders

    def _listing(self, merchant: Merchant, mode: str) -> Listing:
        return merchant.listings.filter(confirm_mode=mode).order_by("id").first()

    def _orders(self, rng: random.Random, merchants: dict[str, Merchant], consumers: list[Consumer]) -> None:
        now = timezone.now()
        broke = [c for n, c in enumerate(consumers, start=1) if n % 12 == 0]
        good = [c for n, c in enumerate(consumers, start=1) if c.credit_profile.score >= 650 and n % 12 != 0]
        poor = [c for c in consumers if c.credit_profile.score < 550]
        seq = 0
        for username, merchant in merchants.items():
            each_time = self._listing(merchant, ConfirmMode.EACH_TIME)
            agreement_listing = self._listing(merchant, ConfirmMode.AGREEMENT)
            # One story per state, per merchant, with different consumers.
            plan = [
                "pending",
                "active",
                "active",
                "completed",
                "completed",
                "paid",
                "paid",
                "paid_elsewhere",
                "refunded",
                "collecting",
                "overdue",
                "cancelled",
                "expired",
                "declined",
                "agreement",
                "agreement",
            ]
            for state in plan:
                if state == "agreement" and agreement_listing is None:
                    continue  # live-stream goods are bought one confirmation at a time
                seq += 1
                out_order_no = f"DEMO-{username.split('-')[1].upper()}-{seq:04d}"
                if CreditOrder.objects.filter(merchant=merchant, out_order_no=out_order_no).exists():
                    continue
                pool = {"declined": poor, "collecting": broke, "overdue": broke}.get(state, good)
                consumer = pool[seq % len(pool)]
                # Each service call is its own (durable) transaction, as a real request would be.
                self._order_in_state(state, merchant, each_time, agreement_listing, consumer, out_order_no, rng, now)

    def _order_in_state(self, state, merchant, each_time, agreement_listing, consumer, out_order_no, rng, now):
        owner = merchant.members.filter(role=MemberRole.OWNER).first().user
        if state == "declined":
            listing = each_time
            order = order_services.credit_order_create(
                actor=owner,
                actor_kind=ActorKind.MERCHANT,
                merchant=merchant,
                listing=listing,
                out_order_no=out_order_no,
                consumer=consumer,
            )
            order_services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
            return
        if state == "agreement":
            # A standing agreement (免确认): signed once by the consumer, then orders are placed server to server.
            agreement = Agreement.objects.filter(consumer=consumer, listing=agreement_listing, status="valid").first()
            if agreement is None:
                agreement = order_services.agreement_sign(
                    actor=consumer.user, consumer=consumer, listing=agreement_listing
                )
            order = order_services.credit_order_create(
                actor=owner,
                actor_kind=ActorKind.MERCHANT,
                merchant=merchant,
                listing=agreement_listing,
                out_order_no=out_order_no,
                consumer=consumer,
                agreement=agreement,
            )
            if order.status == OrderStatus.ACTIVE:
                self._usage(order, merchant, rng, now)
            return
        order = order_services.credit_order_create(
            actor=owner,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=each_time,
            out_order_no=out_order_no,
            consumer=consumer,
        )
        if state == "pending":
            return
        if state == "expired":
            CreditOrder.objects.filter(pk=order.pk).update(expires_at=now - timedelta(minutes=1))
            order.refresh_from_db()
            order_services.credit_order_expire(order=order)
            return
        order = order_services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
        if order.status != OrderStatus.ACTIVE:
            return
        if state == "cancelled":
            order_services.credit_order_cancel(
                actor=consumer.user, actor_kind=ActorKind.CONSUMER, order=order, reason="不需要了"
            )
            return
        self._usage(order, merchant, rng, now)
        if state == "active":
            return
        order = order_services.credit_order_complete(actor=owner, actor_kind=ActorKind.MERCHANT, order=order)
        if state == "completed" or order.status != OrderStatus.COMPLETED:
            return  # awaiting the scheduled charge run (or billed ¥0 and already settled)
        if state == "paid_elsewhere":
            order_services.credit_order_mark_paid_elsewhere(
                actor=owner, actor_kind=ActorKind.MERCHANT, order=order, reason="顾客已在门店现金支付"
            )
            return
        if state in ("paid", "refunded"):
            # The consumer pays straight away from the app, through the charge run's idempotent path.
            credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)
            order.refresh_from_db()
            if state == "refunded" and order.status == OrderStatus.PAID:
                credit_order_refund(
                    actor=owner,
                    actor_kind=ActorKind.MERCHANT,
                    order=order,
                    amount=order.amount_due,
                    reason="服务未完成，全额退款",
                    idempotency_key=f"{order.out_order_no}-R1",
                )
            return
        # collecting / overdue: the scheduled charge of a due order meets an empty card and collection
        # begins (live-stream goods are not due for days: they stay awaiting their charge).
        if order.due_at > timezone.now():
            return
        credit_order_charge_now(actor=None, order=order, trigger=ChargeTrigger.SCHEDULED)
        order.refresh_from_db()
        if state == "overdue" and order.status == OrderStatus.COLLECTING:
            # Let the grace period pass (two days beyond it) for the overdue classification.
            credit_order_mark_overdue(order=order, now=now + settings.BNPL_GRACE_PERIOD + timedelta(days=2))

    # --- rewards

    def _rewards(self, merchants: dict[str, Merchant], consumers: list[Consumer]) -> None:
        """The e-bike merchant's campaign, then kept promises through the real order flow (REWARD_HISTORY)."""
        ebike = merchants["merchant-ebike"]
        if not Campaign.objects.filter(merchant=ebike, title=CAMPAIGN_TITLE).exists():
            campaign_create(
                actor=ebike.members.filter(role=MemberRole.OWNER).first().user,
                merchant=ebike,
                title=CAMPAIGN_TITLE,
                goal_count=3,
                benefit_kind=BenefitKind.COUPON,
                benefit_amount=Decimal("5.00"),
                budget_amount=Decimal("500.00"),
            )
        for index, (n, username, quantity) in enumerate(REWARD_HISTORY, start=1):
            merchant = merchants[username]
            out_order_no = f"DEMO-REWARDS-C{n}-{index:02d}"
            if CreditOrder.objects.filter(merchant=merchant, out_order_no=out_order_no).exists():
                continue
            self._kept_promise(merchant, consumers[n - 1], out_order_no, Decimal(quantity))

    def _kept_promise(self, merchant: Merchant, consumer: Consumer, out_order_no: str, quantity: Decimal) -> None:
        """One order placed, used, billed and paid straight away from the app: a kept promise."""
        # A history of weeks: this order's predecessors are moved out of the velocity windows.
        features = ConsumerFeatures.objects.filter(consumer=consumer).first()
        if features is not None and features.recent_order_times:
            features.recent_order_times = [t - timedelta(days=1) for t in features.recent_order_times]
            features.save(update_fields=["recent_order_times"])
        owner = merchant.members.filter(role=MemberRole.OWNER).first().user
        order = order_services.credit_order_create(
            actor=owner,
            actor_kind=ActorKind.MERCHANT,
            merchant=merchant,
            listing=self._listing(merchant, ConfirmMode.EACH_TIME),
            out_order_no=out_order_no,
            consumer=consumer,
        )
        order = order_services.credit_order_confirm(actor=consumer.user, order=order, consumer=consumer)
        if order.status != OrderStatus.ACTIVE:
            return
        order_services.usage_record(
            actor=None,
            merchant=merchant,
            order=order,
            merchant_event_id=f"{out_order_no}-U1",
            quantity=quantity,
            occurred_at=timezone.now(),
        )
        order = order_services.credit_order_complete(actor=owner, actor_kind=ActorKind.MERCHANT, order=order)
        if order.status == OrderStatus.COMPLETED:
            credit_order_pay_now(actor=consumer.user, order=order, consumer=consumer)

    def _usage(self, order: CreditOrder, merchant: Merchant, rng: random.Random, now) -> None:
        """Realistic usage for the scenario: a charging session, a parcel, gym visits; goods need none."""
        scenario = order.scenario
        events: list[tuple[Decimal, dict]] = []
        if scenario == Scenario.EBIKE_CHARGING:
            minutes = rng.randint(20, 300)
            events.append(
                (Decimal(minutes) / Decimal(60), {"minutes": minutes, "pile": f"HZ-{rng.randint(1, 99):02d}"})
            )
        elif scenario == Scenario.EXPRESS_DELIVERY:
            weight = Decimal(rng.randint(2, 200)) / Decimal(10)
            events.append((weight, {"packaging": rng.random() < 0.3, "declared_value": str(rng.choice([0, 200, 500]))}))
        elif scenario == Scenario.SWIMMING_FITNESS:
            events.append((Decimal(1), {"gate": "A1"}))
        for index, (quantity, properties) in enumerate(events, start=1):
            order_services.usage_record(
                actor=None,
                merchant=merchant,
                order=order,
                merchant_event_id=f"{order.out_order_no}-U{index}",
                quantity=quantity.quantize(Decimal("0.0001")),
                occurred_at=now,
                properties=properties,
            )
