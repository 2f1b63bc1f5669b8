"""seed_demo: idempotent, realistic, and it exercises the real services."""

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from bnpl.choices import OrderStatus
from bnpl.models import Agreement, BillLine, Campaign, CampaignProgress, Coupon, CreditOrder, OrderEvent, UsageEvent
from bnpl.models.incentives import CouponStatus
from consumers.choices import RewardLevel
from consumers.models import Consumer, CreditProfile, PointsEntry, PromiseRecord, RewardAccount
from merchants.choices import MerchantStatus, Scenario
from merchants.models import Listing, Merchant
from scoring.models import AdmissionDecision

MODELS = [
    get_user_model(),
    Merchant,
    Listing,
    Consumer,
    CreditProfile,
    PromiseRecord,
    Agreement,
    CreditOrder,
    BillLine,
    UsageEvent,
    OrderEvent,
    AdmissionDecision,
    Campaign,
    CampaignProgress,
    Coupon,
    RewardAccount,
    PointsEntry,
]


def snapshot():
    counts = {model.__name__: model.objects.count() for model in MODELS}
    orders = sorted(CreditOrder.objects.values_list("out_order_no", "status", "amount_due"))
    return counts, orders


@pytest.mark.django_db
def test_seed_demo_twice_gives_the_same_data():
    call_command("seed_demo", stdout=io.StringIO())
    first = snapshot()
    call_command("seed_demo", stdout=io.StringIO())
    assert snapshot() == first


@pytest.mark.django_db
def test_seed_demo_content():
    call_command("seed_demo", stdout=io.StringIO())
    User = get_user_model()
    logins = ["admin", "merchant-ebike", "merchant-express", "merchant-swim", "merchant-live"]
    logins += [f"consumer{n}" for n in range(1, 6)]
    for username in logins:
        assert User.objects.get(username=username).check_password("demo1234"), username
    assert User.objects.get(username="admin").is_staff

    approved = Merchant.objects.filter(status=MerchantStatus.APPROVED)
    assert sorted(approved.values_list("listings__scenario", flat=True).distinct()) == sorted(Scenario.values)
    assert Merchant.objects.filter(status=MerchantStatus.SUBMITTED).count() == 1
    assert Merchant.objects.filter(status=MerchantStatus.REJECTED).count() == 1

    assert Consumer.objects.count() == 50
    bands = set(CreditProfile.objects.values_list("band", flat=True))
    assert bands == {"poor", "fair", "good", "very_good", "excellent"}

    statuses = set(CreditOrder.objects.values_list("status", flat=True))
    reachable = {
        OrderStatus.PENDING_CONFIRMATION,
        OrderStatus.ACTIVE,
        OrderStatus.COMPLETED,
        OrderStatus.PAID,
        OrderStatus.CANCELLED,
        OrderStatus.EXPIRED,
        OrderStatus.DECLINED,
        OrderStatus.COLLECTING,
        OrderStatus.OVERDUE,
        OrderStatus.REFUNDED,
    }
    assert reachable <= statuses
    assert Agreement.objects.filter(status="valid").exists()
    # Every order has its creation event, and no order has a status without an event leading to it.
    for order in CreditOrder.objects.all():
        assert order.events.order_by("-created_at", "-id").first().to_status == order.status
    # Exposure on each profile equals what its orders hold (invariant 3's bookkeeping).
    for profile in CreditProfile.objects.select_related("consumer"):
        held = sum(o.hold_amount for o in CreditOrder.objects.filter(consumer=profile.consumer))
        assert profile.open_exposure_amount == held

    # Rewards: a campaign of the e-bike merchant, consumer1 above the first level with a coupon in
    # progress, and consumer2's coupon taken off a bill.
    campaign = Campaign.objects.get(title="充电满3次送¥5券", merchant__members__user__username="merchant-ebike")
    assert (campaign.goal_count, campaign.budget_amount) == (3, Decimal("500.00"))
    assert RewardAccount.objects.get(consumer__user__username="consumer1").level != RewardLevel.NEWCOMER
    progress = CampaignProgress.objects.get(campaign=campaign, consumer__user__username="consumer1")
    assert 0 < progress.kept_count < campaign.goal_count and progress.awarded_at is None
    coupon = Coupon.objects.get(campaign=campaign, consumer__user__username="consumer2")
    assert coupon.status == CouponStatus.USED
    assert coupon.used_order.bill_lines.filter(is_discount=True, amount=coupon.used_amount).exists()
