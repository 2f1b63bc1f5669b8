"""Merchant portal: the team page, invitations (create → accept), roles, removal and the activity log."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from merchants.activity import activity_record
from merchants.choices import InvitationStatus, MemberRole
from merchants.models import MerchantActivity, MerchantInvitation, MerchantMember
from merchants.services import invitation_accept, invitation_create
from tests.bnpl.helpers import run_concurrently
from tests.factories import MerchantFactory, MerchantMemberFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_signup_counter():
    """The sign-up rate limit counts per address in the cache; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


ALL_ROLES = [MemberRole.OWNER, MemberRole.OPERATOR, MemberRole.FINANCE, MemberRole.VIEWER]
NOT_OWNER = [MemberRole.OPERATOR, MemberRole.FINANCE, MemberRole.VIEWER]


@pytest.fixture
def owner(client):
    member = MerchantMemberFactory(role=MemberRole.OWNER)
    client.force_login(member.user)
    return member


def _invite(client, contact, role=MemberRole.OPERATOR):
    return client.post(reverse("merchant:team_invite"), {"contact": contact, "role": role})


def _link_token(response):
    match = re.search(r"/merchant/join/([^/\"]+)/", response.content.decode())
    assert match, "the invitation link is shown"
    return match.group(1)


@pytest.mark.parametrize("role", ALL_ROLES)
def test_team_page_renders_for_every_role(client, role):
    member = MerchantMemberFactory(role=role)
    colleague = MerchantMemberFactory(merchant=member.merchant, role=MemberRole.VIEWER)
    client.force_login(member.user)
    response = client.get(reverse("merchant:team"))
    assert response.status_code == 200
    page = response.content.decode()
    assert colleague.user.get_username() in page
    # Only an owner sees the invite form.
    assert (reverse("merchant:team_invite") in page) is (role == MemberRole.OWNER)


@pytest.mark.parametrize("role", NOT_OWNER)
def test_team_actions_and_activity_refuse_other_roles(client, role):
    member = MerchantMemberFactory(role=role)
    owner = MerchantMemberFactory(merchant=member.merchant, role=MemberRole.OWNER)
    client.force_login(member.user)
    assert client.get(reverse("merchant:activity")).status_code == 403
    assert _invite(client, "new@example.com").status_code == 403
    assert (
        client.post(reverse("merchant:team_member_role", args=[owner.pk]), {"role": MemberRole.VIEWER}).status_code
        == 403
    )
    assert client.post(reverse("merchant:team_member_remove", args=[owner.pk])).status_code == 403
    owner.refresh_from_db()
    assert owner.role == MemberRole.OWNER
    assert not MerchantInvitation.objects.exists()


def test_other_merchants_members_and_invitations_are_404(client, owner):
    stranger = MerchantMemberFactory(role=MemberRole.VIEWER)
    invitation, _token = invitation_create(actor=None, merchant=stranger.merchant, role="viewer", email="x@example.com")
    assert client.post(reverse("merchant:team_member_role", args=[stranger.pk]), {"role": "owner"}).status_code == 404
    assert client.post(reverse("merchant:team_member_remove", args=[stranger.pk])).status_code == 404
    assert client.post(reverse("merchant:team_invitation_revoke", args=[invitation.pk])).status_code == 404
    stranger.refresh_from_db()
    invitation.refresh_from_db()
    assert stranger.role == MemberRole.VIEWER and invitation.status == InvitationStatus.PENDING


def test_invite_by_email_then_new_person_accepts_with_a_new_login(client, owner):
    response = _invite(client, "Cashier@Example.com", MemberRole.FINANCE)
    assert response.status_code == 200
    token = _link_token(response)
    invitation = MerchantInvitation.objects.get()
    assert invitation.email == "cashier@example.com" and invitation.role == MemberRole.FINANCE
    assert token not in invitation.token_hash  # only the hash is stored
    # The link is not shown again on the team page.
    assert token not in client.get(reverse("merchant:team")).content.decode()

    client.logout()
    join_url = reverse("merchant:join", args=[token])
    page = client.get(join_url)
    # The link holder sees only the masked address, neither shown in full nor prefilled.
    assert page.status_code == 200 and "c***@example.com" in page.content.decode()
    assert "cashier@example.com" not in page.content.decode()
    response = client.post(
        join_url,
        {
            "username": "cashier",
            "email": "cashier@example.com",
            "phone": "13900001111",
            "password": "Cashier-pass-2026",
            "password_confirm": "Cashier-pass-2026",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("merchant:dashboard")
    user = get_user_model().objects.get(username="cashier")
    member = MerchantMember.objects.get(merchant=owner.merchant, user=user)
    assert member.role == MemberRole.FINANCE
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED and invitation.accepted_by == user
    # The link works once.
    client.logout()
    assert client.get(join_url).status_code == 410
    actions = set(MerchantActivity.objects.filter(merchant=owner.merchant).values_list("action", flat=True))
    assert actions == {"team.invite", "team.join"}


def _signup_data(username, email, phone):
    return {
        "username": username,
        "email": email,
        "phone": phone,
        "password": "Cashier-pass-2026",
        "password_confirm": "Cashier-pass-2026",
    }


def test_invite_by_phone_joins_only_with_a_login_created_with_that_number(client, owner):
    token = _link_token(_invite(client, "+86 138-0013-8000", MemberRole.VIEWER))
    invitation = MerchantInvitation.objects.get()
    assert invitation.phone == "13800138000"
    join_url = reverse("merchant:join", args=[token])
    # A signed-in account has no verified number: it cannot take a mobile invitation.
    existing = UserFactory()
    client.force_login(existing)
    assert "138****8000" in client.get(join_url).content.decode()
    refused = client.post(join_url, follow=True)
    assert "sent to the mobile number 138****8000" in refused.content.decode()
    assert not MerchantMember.objects.filter(user=existing).exists()
    # A new login with another number is refused on the number, and no login is left behind.
    client.logout()
    response = client.post(join_url, _signup_data("stranger", "stranger@example.com", "13900001111"))
    assert response.status_code == 200
    assert "138****8000" in response.context["form"].errors["phone"][0]
    assert not get_user_model().objects.filter(username="stranger").exists()
    # The invited number joins.
    response = client.post(join_url, _signup_data("viewer1", "viewer1@example.com", "138 0013 8000"))
    assert response.status_code == 302
    user = get_user_model().objects.get(username="viewer1")
    assert MerchantMember.objects.get(merchant=owner.merchant, user=user).role == MemberRole.VIEWER
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED


def test_a_leaked_owner_link_does_not_let_another_account_join(client, owner):
    token = _link_token(_invite(client, "partner@example.com", MemberRole.OWNER))
    join_url = reverse("merchant:join", args=[token])
    intruder = UserFactory(email="intruder@example.com")
    client.force_login(intruder)
    response = client.post(join_url, follow=True)
    assert "sent to p***@example.com" in response.content.decode()
    assert not MerchantMember.objects.filter(user=intruder).exists()
    # Nor by signing up with another address.
    client.logout()
    response = client.post(join_url, _signup_data("intruder2", "intruder2@example.com", "13900002222"))
    assert "p***@example.com" in response.context["form"].errors["email"][0]
    assert not get_user_model().objects.filter(username="intruder2").exists()
    assert MerchantInvitation.objects.get().status == InvitationStatus.PENDING
    # The invited person, whatever the case of their address, joins.
    partner = UserFactory(email="Partner@Example.com")
    client.force_login(partner)
    assert client.post(join_url).status_code == 302
    assert MerchantMember.objects.get(merchant=owner.merchant, user=partner).role == MemberRole.OWNER


def test_invite_refuses_bad_contact_and_keeps_input(client, owner):
    response = _invite(client, "1234")
    assert response.status_code == 200
    assert response.context["invite_form"].errors["contact"]
    assert 'value="1234"' in response.content.decode()
    other = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER, user__email="dup@example.com")
    response = _invite(client, other.user.email)
    assert "already a member" in response.context["invite_form"].errors["contact"][0]
    assert not MerchantInvitation.objects.exists()


def test_expired_and_revoked_invitations_do_not_work(client, owner):
    first, token1 = invitation_create(actor=owner.user, merchant=owner.merchant, role="viewer", email="a@example.com")
    second, token2 = invitation_create(actor=owner.user, merchant=owner.merchant, role="viewer", email="b@example.com")
    MerchantInvitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert client.post(reverse("merchant:team_invitation_revoke", args=[second.pk])).status_code == 302
    newcomer = UserFactory(email="a@example.com")
    client.force_login(newcomer)
    assert client.post(reverse("merchant:join", args=[token1])).status_code == 410
    assert client.post(reverse("merchant:join", args=[token2])).status_code == 410
    assert client.get(reverse("merchant:join", args=["not-a-token"])).status_code == 404
    assert not MerchantMember.objects.filter(user=newcomer).exists()


def test_change_role_and_remove_member(client, owner):
    colleague = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)
    client.post(reverse("merchant:team_member_role", args=[colleague.pk]), {"role": MemberRole.OPERATOR})
    colleague.refresh_from_db()
    assert colleague.role == MemberRole.OPERATOR
    client.post(reverse("merchant:team_member_remove", args=[colleague.pk]))
    assert not MerchantMember.objects.filter(pk=colleague.pk).exists()
    log = MerchantActivity.objects.filter(merchant=owner.merchant).order_by("id")
    assert [(row.action, row.detail) for row in log] == [
        ("team.role_change", {"from": "viewer", "to": "operator"}),
        ("team.remove", {"role": "operator"}),
    ]


def test_last_owner_cannot_be_demoted_or_removed(client, owner):
    response = client.post(reverse("merchant:team_member_role", args=[owner.pk]), {"role": MemberRole.VIEWER})
    assert response.status_code == 302
    assert "at least one owner" in client.get(reverse("merchant:team")).content.decode()
    client.post(reverse("merchant:team_member_remove", args=[owner.pk]))
    owner.refresh_from_db()
    assert owner.role == MemberRole.OWNER
    assert not MerchantActivity.objects.exists()


def test_activity_log_filters_and_translates_labels(client, owner):
    colleague = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.OPERATOR)
    activity_record(merchant=owner.merchant, member=colleague, action="listing.pause", target="listing 7")
    activity_record(merchant=owner.merchant, member=owner, action="api_key.create", target="sk_test_x")
    activity_record(merchant=MerchantFactory(), member=None, action="listing.pause", target="elsewhere")
    page = client.get(reverse("merchant:activity")).content.decode()
    assert "Paused a listing" in page and "Created an API key" in page and "elsewhere" not in page
    filtered = client.get(reverse("merchant:activity"), {"user": colleague.user_id}, headers={"HX-Request": "true"})
    body = filtered.content.decode()
    assert "listing 7" in body and "sk_test_x" not in body and "<html" not in body
    by_action = client.get(reverse("merchant:activity"), {"action": "api_key.create"}).content.decode()
    assert "sk_test_x" in by_action and "listing 7" not in by_action


def _count_queries(client, url):
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_team_page_queries_do_not_grow_with_members(client, owner):
    MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)
    invitation_create(actor=owner.user, merchant=owner.merchant, role="viewer", email="i0@example.com")
    few = _count_queries(client, reverse("merchant:team"))
    for n in range(18):
        MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)
        invitation_create(actor=owner.user, merchant=owner.merchant, role="viewer", email=f"i{n + 1}@example.com")
    assert _count_queries(client, reverse("merchant:team")) == few


def test_activity_page_queries_do_not_grow_with_rows(client, owner):
    colleague = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.OPERATOR)
    for _ in range(2):
        activity_record(merchant=owner.merchant, member=colleague, action="order.refund", target="order T1")
    few = _count_queries(client, reverse("merchant:activity"))
    for n in range(18):
        member = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.OPERATOR)
        activity_record(merchant=owner.merchant, member=member, action=f"order.custom{n}", target="order T2")
    assert _count_queries(client, reverse("merchant:activity")) == few


@pytest.mark.parametrize("model", ["merchantactivity", "merchanttask", "merchantinvitation"])
def test_admin_shows_activity_tasks_and_invitations_read_only(admin_client, model):
    member = MerchantMemberFactory(role=MemberRole.OWNER)
    activity_record(merchant=member.merchant, member=member, action="team.invite", target="x@example.com")
    invitation_create(actor=member.user, merchant=member.merchant, role="viewer", email="x@example.com")
    assert admin_client.get(reverse(f"admin:merchants_{model}_changelist")).status_code == 200
    assert admin_client.get(reverse(f"admin:merchants_{model}_add")).status_code == 403


def test_role_change_through_htmx_swaps_the_members_table(client, owner):
    colleague = MerchantMemberFactory(merchant=owner.merchant, role=MemberRole.VIEWER)
    url = reverse("merchant:team_member_role", args=[colleague.pk])
    response = client.post(url, {"role": MemberRole.FINANCE}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="members-block"' in body
    assert "is now Finance" in body
    colleague.refresh_from_db()
    assert colleague.role == MemberRole.FINANCE
    # Demoting the last owner (oneself) is refused; the full page is reloaded with the message.
    refused = client.post(
        reverse("merchant:team_member_role", args=[owner.pk]),
        {"role": MemberRole.VIEWER},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 204 and refused["HX-Redirect"] == reverse("merchant:team")
    owner.refresh_from_db()
    assert owner.role == MemberRole.OWNER


@pytest.mark.django_db(transaction=True)
def test_one_invitation_link_opened_twice_at_once_admits_one_person():
    owner = MerchantMemberFactory(role=MemberRole.OWNER)
    invitation, _token = invitation_create(
        actor=owner.user, merchant=owner.merchant, role="viewer", phone="13800138000"
    )
    first, second = UserFactory(), UserFactory()

    results = run_concurrently(
        lambda: invitation_accept(actor=first, invitation=invitation, phone="13800138000"),
        lambda: invitation_accept(actor=second, invitation=invitation, phone="13800138000"),
    )

    assert sorted(type(result).__name__ for result in results) == ["InvalidTransition", "MerchantMember"]
    assert MerchantMember.objects.filter(merchant=owner.merchant, role=MemberRole.VIEWER).count() == 1
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED
