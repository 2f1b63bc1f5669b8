"""factory_boy factories shared by the whole suite.

Factories build rows directly (fast, for arranging a test); the behaviour under
test always goes through the services.
"""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from stdnum.cn import ric, uscc

from consumers.models import Consumer, CreditProfile
from merchants.choices import ConfirmMode, MemberRole, MerchantCategory, MerchantStatus, Scenario
from merchants.models import Listing, Merchant, MerchantMember


def make_uscc(n: int) -> str:
    """A valid 18-character USCC, distinct for each ``n``."""
    body = f"91330106MA{n:07d}"
    return body + uscc.calc_check_digit(body)


def make_resident_id(n: int, birth: str = "19900101") -> str:
    """A valid resident ID (Hangzhou Xihu district prefix), distinct for each ``n``."""
    body = f"330106{birth}{n % 1000:03d}"
    # stdnum computes the check digit of a full 18-character number: pad the body with a placeholder.
    return body + ric.calc_check_digit(body + "0")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("demo1234")


class MerchantFactory(factory.django.DjangoModelFactory):
    """An approved merchant (the usual precondition); pass ``status=...`` for others."""

    class Meta:
        model = Merchant

    legal_name = factory.Sequence(lambda n: f"杭州测试商贸有限公司{n}")
    display_name = factory.Sequence(lambda n: f"测试商家{n}")
    uscc = factory.Sequence(make_uscc)
    legal_representative = "张三"
    contact_name = "李四"
    contact_phone = factory.Sequence(lambda n: f"139{n:08d}")
    city = "杭州"
    categories = factory.LazyFunction(lambda: [MerchantCategory.EBIKE_CHARGING.value])
    settlement_bank_name = "招商银行杭州分行"
    settlement_account_name = factory.SelfAttribute("legal_name")
    settlement_account_number = "6225880123456789"
    fee_rate = Decimal("0.0060")
    status = MerchantStatus.APPROVED
    submitted_at = factory.LazyFunction(timezone.now)
    approved_at = factory.LazyFunction(timezone.now)


class MerchantMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MerchantMember

    merchant = factory.SubFactory(MerchantFactory)
    user = factory.SubFactory(UserFactory)
    role = MemberRole.OWNER


class ListingFactory(factory.django.DjangoModelFactory):
    """An active e-bike charging listing at ¥1/hour, capped ¥10 per 24 h."""

    class Meta:
        model = Listing

    merchant = factory.SubFactory(MerchantFactory)
    title = factory.Sequence(lambda n: f"电动车充电桩 {n}号")
    description = "扫码充电，先充后付"
    scenario = Scenario.EBIKE_CHARGING
    confirm_mode = ConfirmMode.EACH_TIME
    max_amount = Decimal("20.00")
    min_score = 550
    order_ttl_minutes = 30
    pricing_rule = factory.LazyFunction(
        lambda: {
            "kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "0",
            "minimum_amount": "0.00",
            "cap_per_24h": "10.00",
            "round_up": True,
        }
    )


class ConsumerFactory(factory.django.DjangoModelFactory):
    """A consumer with a credit profile (score 650, limit ¥1,000, nothing held)."""

    class Meta:
        model = Consumer
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    phone = factory.Sequence(lambda n: f"138{n:08d}")
    phone_verified = True
    city = "杭州"

    @factory.post_generation
    def profile(obj, create, extracted, **kwargs):
        if not create:
            return
        values = {"score": 650, "credit_limit_amount": Decimal("1000.00")}
        values.update(kwargs)
        CreditProfile.objects.create(consumer=obj, **values)
