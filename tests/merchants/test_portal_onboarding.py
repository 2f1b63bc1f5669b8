"""Merchant portal: sign-up, the onboarding wizard, submission and the application status page."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from merchants.choices import MemberRole, MerchantCategory, MerchantStatus
from merchants.models import Merchant, MerchantActivity, MerchantMember
from merchants.services import merchant_approve, merchant_reject, merchant_suspend
from tests.factories import MerchantFactory, MerchantMemberFactory, UserFactory, make_uscc

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_signup_counter():
    """The sign-up rate limit counts per address in the cache; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


STEP_DATA = {
    "company": {"legal_name": "杭州西湖充电科技有限公司", "display_name": "西湖充电", "uscc": "", "city": "杭州"},
    "legal": {"legal_representative": "王五"},
    "contact": {"contact_name": "赵六", "contact_phone": "+86 138-0013-8000", "contact_email": "ops@xihu.example"},
    "categories": {"categories": [MerchantCategory.EBIKE_CHARGING.value, MerchantCategory.EXPRESS_DELIVERY.value]},
    "bank": {
        "settlement_bank_name": "招商银行杭州分行",
        "settlement_account_name": "杭州西湖充电科技有限公司",
        "settlement_account_number": "6225 8801 2345 6789",
    },
}


def _step(step):
    return reverse("merchant:onboarding_step", args=[step])


def _signup(client, username="xihu", email="boss@xihu.example"):
    return client.post(
        reverse("merchant:signup"),
        {
            "username": username,
            "email": email,
            "phone": "13800138000",
            "password": "Xihu-charging-2026",
            "password_confirm": "Xihu-charging-2026",
        },
    )


def test_signup_onboarding_submit_approve_end_to_end(client, staff_user):
    response = _signup(client)
    assert response.status_code == 302 and response["Location"] == reverse("merchant:onboarding")
    user = get_user_model().objects.get(username="xihu")
    assert user.email == "boss@xihu.example" and user.check_password("Xihu-charging-2026")
    assert client.get(reverse("merchant:onboarding"))["Location"] == _step("company")

    uscc = make_uscc(900001)
    for step, data in STEP_DATA.items():
        payload = {**data, "uscc": uscc} if step == "company" else data
        response = client.post(_step(step), payload)
        assert response.status_code == 302, (step, response.content.decode()[:2000])

    merchant = Merchant.objects.get(uscc=uscc)
    assert merchant.status == MerchantStatus.DRAFT
    assert merchant.contact_phone == "13800138000"
    assert merchant.settlement_account_number == "6225880123456789"
    assert merchant.categories == [MerchantCategory.EBIKE_CHARGING, MerchantCategory.EXPRESS_DELIVERY]
    assert MerchantMember.objects.get(merchant=merchant).user == user

    review = client.get(_step("review"))
    assert review.status_code == 200
    assert "0.6%" in review.content.decode()  # the fee terms are shown before submitting

    response = client.post(reverse("merchant:onboarding_submit"))
    assert response["Location"] == reverse("merchant:account")
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.SUBMITTED
    assert "Under review" in client.get(reverse("merchant:account")).content.decode()
    # Once submitted, the wizard no longer edits anything.
    assert client.post(_step("legal"), {"legal_representative": "Someone else"})["Location"] == reverse(
        "merchant:account"
    )
    merchant.refresh_from_db()
    assert merchant.legal_representative == "王五"

    merchant_approve(actor=staff_user, merchant=merchant)
    page = client.get(reverse("merchant:account")).content.decode()
    assert "Approved" in page and "Under review" not in page
    actions = list(MerchantActivity.objects.filter(merchant=merchant).order_by("id").values_list("action", flat=True))
    assert actions[0] == "application.start" and actions[-1] == "application.submit"


def test_signup_form_errors_keep_what_was_typed(client):
    UserFactory(username="taken", email="taken@example.com")
    response = client.post(
        reverse("merchant:signup"),
        {
            "username": "taken",
            "email": "new@example.com",
            "phone": "12345",
            "password": "Xihu-charging-2026",
            "password_confirm": "Xihu-charging-2026",
        },
    )
    assert response.status_code == 200
    form = response.context["form"]
    assert set(form.errors) == {"username", "phone"}
    assert 'value="new@example.com"' in response.content.decode()
    assert not get_user_model().objects.filter(email="new@example.com").exists()


def test_signup_is_rate_limited_per_address(client, settings):
    settings.MERCHANT_SIGNUP_RATE_LIMIT = 2
    assert _signup(client, "a1", "a1@example.com").status_code == 302
    client.logout()
    assert _signup(client, "a2", "a2@example.com").status_code == 302
    client.logout()
    response = _signup(client, "a3", "a3@example.com")
    assert response.status_code == 429
    assert not get_user_model().objects.filter(username="a3").exists()


def test_signup_limit_reads_the_client_behind_a_trusted_proxy_only(client, settings):
    settings.MERCHANT_SIGNUP_RATE_LIMIT = 1
    proxied = {"REMOTE_ADDR": "10.0.0.1"}

    def attempt(n, forwarded):
        return Client(**proxied).post(
            reverse("merchant:signup"),
            {"username": f"p{n}", "email": f"p{n}@example.com", "phone": "13800138000", "password": "x"},
            headers={"X-Forwarded-For": forwarded},
        )

    # Without a trusted proxy the header is ignored: every client behind 10.0.0.1 shares one counter.
    assert attempt(1, "198.51.100.1").status_code == 200
    assert attempt(2, "198.51.100.2").status_code == 429
    cache.clear()
    settings.AXES_IPWARE_PROXY_COUNT = 1
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    assert attempt(3, "198.51.100.1").status_code == 200
    assert attempt(4, "198.51.100.2").status_code == 200  # another client, its own counter
    assert attempt(5, "6.6.6.6, 198.51.100.1").status_code == 429  # a forged left entry changes nothing


def test_bank_step_hides_the_account_number_from_error_reports(client):
    _signup(client)
    client.post(_step("company"), {**STEP_DATA["company"], "uscc": make_uscc(900002)})
    response = client.post(_step("bank"), STEP_DATA["bank"])
    assert response.status_code == 302
    reported = SafeExceptionReporterFilter().get_post_parameters(response.wsgi_request)
    assert reported["settlement_account_number"] != STEP_DATA["bank"]["settlement_account_number"]
    assert set(reported["settlement_account_number"]) == {"*"}
    assert reported["settlement_bank_name"] == STEP_DATA["bank"]["settlement_bank_name"]


def test_company_step_shows_field_errors_and_keeps_input(client):
    existing = MerchantFactory()
    client.force_login(UserFactory())
    response = client.post(
        _step("company"), {"legal_name": "杭州某公司", "display_name": "某店", "uscc": existing.uscc, "city": ""}
    )
    assert response.status_code == 200
    assert "already exists" in response.context["form"].errors["uscc"][0]
    assert "杭州某公司" in response.content.decode()
    assert Merchant.objects.count() == 1


def test_uscc_check_as_you_type(client):
    existing = MerchantFactory()
    client.force_login(UserFactory())
    url = reverse("merchant:onboarding_check_uscc")
    bad = client.get(url, {"uscc": "91330106MA0000000X"}, headers={"HX-Request": "true"}).content.decode()
    assert "valid unified social credit code" in bad and "<html" not in bad
    taken = client.get(url, {"uscc": existing.uscc}).content.decode()
    assert "already exists" in taken
    fine = client.get(url, {"uscc": make_uscc(900002)}).content.decode()
    assert "Valid code" in fine


def test_steps_after_company_need_a_draft_first(client):
    client.force_login(UserFactory())
    assert client.get(_step("bank"))["Location"] == _step("company")
    assert client.get(_step("nonsense")).status_code == 404


def test_rejected_application_shows_reason_and_can_be_fixed_and_resubmitted(client, staff_user):
    member = MerchantMemberFactory(role=MemberRole.OWNER, merchant__status=MerchantStatus.SUBMITTED)
    merchant = member.merchant
    merchant_reject(actor=staff_user, merchant=merchant, reason="营业执照与法人不一致，请核对法定代表人")
    client.force_login(member.user)
    page = client.get(reverse("merchant:account")).content.decode()
    assert "Rejected" in page and "营业执照与法人不一致" in page
    assert client.post(_step("legal"), {"legal_representative": "张三丰"}).status_code == 302
    client.post(reverse("merchant:onboarding_submit"))
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.SUBMITTED and merchant.legal_representative == "张三丰"


def test_incomplete_application_cannot_be_submitted(client):
    user = UserFactory()
    client.force_login(user)
    client.post(_step("company"), {**STEP_DATA["company"], "uscc": make_uscc(900003)})
    merchant = Merchant.objects.get(uscc=make_uscc(900003))
    review = client.get(_step("review"))
    assert review.status_code == 200 and len(review.context["missing"]) >= 5
    response = client.post(reverse("merchant:onboarding_submit"))
    assert response["Location"] == _step("review")
    merchant.refresh_from_db()
    assert merchant.status == MerchantStatus.DRAFT


@pytest.mark.parametrize("role", [MemberRole.OWNER, MemberRole.OPERATOR, MemberRole.FINANCE, MemberRole.VIEWER])
def test_account_page_renders_for_every_role(client, role):
    member = MerchantMemberFactory(role=role)
    client.force_login(member.user)
    response = client.get(reverse("merchant:account"))
    assert response.status_code == 200
    assert member.merchant.legal_name in response.content.decode()
    assert "6789" in response.content.decode() and "6225880123456789" not in response.content.decode()


@pytest.mark.parametrize("role", [MemberRole.OPERATOR, MemberRole.FINANCE, MemberRole.VIEWER])
def test_only_owner_edits_or_submits_the_application(client, role):
    member = MerchantMemberFactory(role=role, merchant__status=MerchantStatus.DRAFT)
    client.force_login(member.user)
    assert client.get(_step("company")).status_code == 403
    assert client.post(_step("legal"), {"legal_representative": "X"}).status_code == 403
    assert client.post(reverse("merchant:onboarding_submit")).status_code == 403
    member.merchant.refresh_from_db()
    assert member.merchant.status == MerchantStatus.DRAFT and member.merchant.legal_representative == "张三"


def test_owner_edits_only_their_own_application(client):
    mine = MerchantMemberFactory(role=MemberRole.OWNER, merchant__status=MerchantStatus.DRAFT)
    other = MerchantFactory(status=MerchantStatus.DRAFT)
    client.force_login(mine.user)
    client.post(_step("legal"), {"legal_representative": "李雷"})
    other.refresh_from_db()
    mine.merchant.refresh_from_db()
    assert mine.merchant.legal_representative == "李雷" and other.legal_representative == "张三"


def test_anonymous_is_sent_to_login(client):
    for url in (_step("company"), reverse("merchant:account"), reverse("merchant:onboarding")):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("merchant:login"))


def test_wizard_and_status_pages_render_in_chinese(client, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    member = MerchantMemberFactory(
        role=MemberRole.OWNER, merchant__status=MerchantStatus.DRAFT, merchant__contact_name=""
    )
    client.force_login(member.user)
    for url in (_step("company"), _step("categories"), _step("review"), reverse("merchant:account")):
        response = client.get(url, headers={"Accept-Language": "zh-hans"})
        assert response.status_code == 200, url
        assert '<html lang="zh-hans">' in response.content.decode()


def test_every_field_error_of_a_step_shows_at_once(client):
    client.force_login(UserFactory())
    response = client.post(_step("company"), {"legal_name": "", "display_name": "某店", "uscc": "123"})
    errors = response.context["form"].errors
    assert set(errors) == {"legal_name", "uscc"}
    assert "unified social credit code" in errors["uscc"][0]
    assert not Merchant.objects.exists()


def test_paused_merchant_sees_the_reason(client, staff_user):
    member = MerchantMemberFactory(role=MemberRole.VIEWER)
    merchant_suspend(actor=staff_user, merchant=member.merchant, reason="投诉率过高，暂停接单")
    client.force_login(member.user)
    page = client.get(reverse("merchant:account")).content.decode()
    assert "Paused by the platform" in page and "投诉率过高" in page
