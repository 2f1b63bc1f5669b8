"""The merchant portal's access layer: log-in, membership, the role matrix and the merchant switch."""

import pytest
from django.urls import reverse

from merchants.choices import MemberRole
from merchants.portal.access import CAPABILITY_ROLES, Capability, member_can
from tests.factories import MerchantFactory, MerchantMemberFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_the_merchant_login(client):
    response = client.get(reverse("merchant:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("merchant:login"))


def test_member_logs_in_by_username_or_email_and_sees_their_merchant(client):
    member = MerchantMemberFactory(role=MemberRole.VIEWER, user__email="ops@example.com")
    member.user.set_password("pw-12345678")
    member.user.save()
    response = client.post(reverse("merchant:login"), {"username": "ops@example.com", "password": "pw-12345678"})
    assert response.status_code == 302 and response["Location"] == reverse("merchant:dashboard")
    page = client.get(reverse("merchant:dashboard"))
    assert page.status_code == 200
    assert member.merchant.display_name in page.content.decode()


def test_signed_in_user_without_membership_gets_403_page(client):
    client.force_login(UserFactory())
    assert client.get(reverse("merchant:dashboard")).status_code == 403


def test_switch_only_to_own_merchants(client):
    member = MerchantMemberFactory(role=MemberRole.OWNER)
    second = MerchantMemberFactory(user=member.user, role=MemberRole.VIEWER)
    stranger = MerchantFactory()
    client.force_login(member.user)
    assert client.post(reverse("merchant:switch"), {"merchant": stranger.pk}).status_code == 404
    client.post(reverse("merchant:switch"), {"merchant": second.merchant_id})
    assert second.merchant.display_name in client.get(reverse("merchant:dashboard")).content.decode()


@pytest.mark.parametrize(
    ("role", "capability", "allowed"),
    [
        (MemberRole.OWNER, Capability.MANAGE_TEAM, True),
        (MemberRole.VIEWER, Capability.VIEW_MONEY, True),
        (MemberRole.VIEWER, Capability.MANAGE_ORDERS, False),
        (MemberRole.OPERATOR, Capability.VIEW_MONEY, False),
        (MemberRole.OPERATOR, Capability.MANAGE_LISTINGS, True),
        (MemberRole.FINANCE, Capability.REFUND, True),
        (MemberRole.FINANCE, Capability.MANAGE_ORDERS, False),
    ],
)
def test_role_matrix(role, capability, allowed):
    member = MerchantMemberFactory.build(role=role)
    assert member_can(member, capability) is allowed


def test_owner_holds_every_capability():
    assert all(MemberRole.OWNER in roles for roles in CAPABILITY_ROLES.values())
