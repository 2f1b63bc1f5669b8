"""Listings in the merchant portal: roles, tenancy, the editor for every rule kind, preview, badge, CSV import."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.safestring import SafeString

from merchants.choices import ListingStatus, MemberRole, MerchantCategory, MerchantTaskStatus
from merchants.models import Listing, MerchantActivity, MerchantTask
from merchants.portal.listing_forms import bill_preview
from merchants.portal.listing_import import sample_csv
from merchants.pricing import parse_rule
from merchants.task_runner import merchant_task_run
from tests.factories import ListingFactory, MerchantFactory, MerchantMemberFactory

pytestmark = pytest.mark.django_db
D = Decimal

ALL_CATEGORIES = [
    MerchantCategory.EBIKE_CHARGING.value,
    MerchantCategory.EXPRESS_DELIVERY.value,
    MerchantCategory.SWIMMING_FITNESS.value,
    MerchantCategory.LIVE_SHOPPING.value,
]


@pytest.fixture
def merchant(db):
    return MerchantFactory(categories=ALL_CATEGORIES)


def login(client, merchant, role=MemberRole.OWNER):
    member = MerchantMemberFactory(merchant=merchant, role=role)
    client.force_login(member.user)
    return member


BASE = {
    "title": "充电桩 A",
    "description": "",
    "scenario": "ebike_charging",
    "confirm_mode": "each_time",
    "max_amount": "20.00",
    "min_score": "550",
    "order_ttl_minutes": "30",
}

RULE_POSTS = {
    "fixed": (
        {"scenario": "live_shopping", "rule_kind": "fixed", "price": "15.50", "fixed_name": "商品金额"},
        {"kind": "fixed", "price": "15.50", "name": "商品金额"},
    ),
    "per_unit": (
        {
            "rule_kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "",
            "minimum_amount": "",
            "cap_per_24h": "10.00",
            "round_up": "on",
        },
        {
            "kind": "per_unit",
            "unit": "hour",
            "unit_price": "1.00",
            "free_units": "0",
            "minimum_amount": "0.00",
            "cap_per_24h": "10.00",
            "round_up": True,
        },
    ),
    "tiered": (
        {
            "rule_kind": "tiered",
            "unit": "kwh",
            "tier_0_up_to": "10",
            "tier_0_unit_price": "1.20",
            "tier_1_up_to": "",
            "tier_1_unit_price": "0.90",
            "free_units": "1",
        },
        {
            "kind": "tiered",
            "unit": "kwh",
            "tiers": [{"up_to": "10", "unit_price": "1.20"}, {"up_to": None, "unit_price": "0.90"}],
            "free_units": "1",
        },
    ),
    "express": (
        {
            "scenario": "express_delivery",
            "max_amount": "200.00",
            "rule_kind": "express",
            "first_weight_kg": "1",
            "first_weight_fee": "12.00",
            "additional_per_kg": "2.00",
            "packaging_fee": "3.00",
            "insurance_rate": "0.01",
            "insurance_min_fee": "1.00",
        },
        {
            "kind": "express",
            "first_weight_kg": "1",
            "first_weight_fee": "12.00",
            "additional_per_kg": "2.00",
            "packaging_fee": "3.00",
            "insurance_rate": "0.01",
            "insurance_min_fee": "1.00",
        },
    ),
}


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize("role", list(MemberRole))
def test_list_and_detail_render_for_every_role(client, merchant, role):
    listing = ListingFactory(merchant=merchant, title="夜间充电")
    login(client, merchant, role)
    page = client.get(reverse("merchant:listings"))
    assert page.status_code == 200
    assert "夜间充电" in page.content.decode()
    detail = client.get(reverse("merchant:listing", args=[listing.pk]))
    assert detail.status_code == 200
    can_edit = role in (MemberRole.OWNER, MemberRole.OPERATOR)
    assert (reverse("merchant:listing_edit", args=[listing.pk]) in detail.content.decode()) is can_edit


@pytest.mark.parametrize("role", [MemberRole.FINANCE, MemberRole.VIEWER])
def test_roles_without_manage_listings_get_403_and_change_nothing(client, merchant, role):
    listing = ListingFactory(merchant=merchant)
    login(client, merchant, role)
    assert client.get(reverse("merchant:listing_create")).status_code == 403
    assert client.post(reverse("merchant:listing_create"), {**BASE, **RULE_POSTS["per_unit"][0]}).status_code == 403
    assert client.get(reverse("merchant:listing_edit", args=[listing.pk])).status_code == 403
    assert client.post(reverse("merchant:listing_pause", args=[listing.pk])).status_code == 403
    assert client.get(reverse("merchant:listing_import")).status_code == 403
    listing.refresh_from_db()
    assert listing.status == ListingStatus.ACTIVE
    assert Listing.objects.filter(merchant=merchant).count() == 1


def test_another_merchants_listing_is_404(client, merchant):
    foreign = ListingFactory(merchant=MerchantFactory())
    login(client, merchant)
    for name in ("merchant:listing", "merchant:listing_edit"):
        assert client.get(reverse(name, args=[foreign.pk])).status_code == 404
    assert client.post(reverse("merchant:listing_pause", args=[foreign.pk])).status_code == 404
    assert client.get(reverse("merchant:listing_preview"), {"listing": foreign.pk}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == ListingStatus.ACTIVE


def test_list_query_count_is_constant_in_the_number_of_listings(client, merchant):
    login(client, merchant)
    ListingFactory.create_batch(2, merchant=merchant)
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse("merchant:listings")).status_code == 200
    more = ListingFactory.create_batch(18, merchant=merchant)
    with CaptureQueriesContext(connection) as many:
        page = client.get(reverse("merchant:listings"))
    assert all(listing.title in page.content.decode() for listing in more)
    assert len(many) == len(few)


# --------------------------------------------------------------------------- create and edit


@pytest.mark.parametrize("kind", list(RULE_POSTS))
def test_create_listing_with_each_rule_kind(client, merchant, kind):
    member = login(client, merchant, MemberRole.OPERATOR)
    post, expected_rule = RULE_POSTS[kind]
    response = client.post(reverse("merchant:listing_create"), {**BASE, **post})
    listing = Listing.objects.get(merchant=merchant)
    assert response.status_code == 302
    assert response["Location"] == reverse("merchant:listing", args=[listing.pk])
    assert listing.pricing_rule == expected_rule
    assert listing.status == ListingStatus.ACTIVE
    activity = MerchantActivity.objects.get(merchant=merchant)
    assert (activity.action, activity.user_id, activity.target) == ("listing.create", member.user_id, listing.title)


@pytest.mark.parametrize("kind", list(RULE_POSTS))
def test_edit_form_round_trips_each_rule_kind(client, merchant, kind):
    """The editor shows a stored rule in its fields; saving it unchanged stores the same rule."""
    login(client, merchant)
    post, expected_rule = RULE_POSTS[kind]
    client.post(reverse("merchant:listing_create"), {**BASE, **post})
    listing = Listing.objects.get(merchant=merchant)
    form = client.get(reverse("merchant:listing_edit", args=[listing.pk])).context["form"]
    data = {key: value for key, value in form.initial.items() if value not in (None, False)}
    data["round_up"] = "on" if form.initial.get("round_up") else ""
    response = client.post(reverse("merchant:listing_edit", args=[listing.pk]), {**data, "title": "改名"})
    assert response.status_code == 302
    listing.refresh_from_db()
    assert listing.title == "改名"
    assert listing.pricing_rule == expected_rule
    assert MerchantActivity.objects.filter(merchant=merchant, action="listing.update").count() == 1


def test_edit_changes_the_price(client, merchant):
    login(client, merchant)
    listing = ListingFactory(merchant=merchant)
    post = {**BASE, **RULE_POSTS["per_unit"][0], "unit_price": "1.50", "cap_per_24h": ""}
    assert client.post(reverse("merchant:listing_edit", args=[listing.pk]), post).status_code == 302
    listing.refresh_from_db()
    assert parse_rule(listing.pricing_rule).unit_price == D("1.50")
    assert listing.pricing_rule["cap_per_24h"] is None


def test_invalid_rule_shows_field_errors_keeps_input_and_saves_nothing(client, merchant):
    login(client, merchant)
    post = {**BASE, **RULE_POSTS["per_unit"][0], "unit_price": "1.00001", "title": "保留的标题"}
    response = client.post(reverse("merchant:listing_create"), post)
    assert response.status_code == 200
    form = response.context["form"]
    assert "unit_price" in form.errors
    assert "保留的标题" in response.content.decode()
    assert not Listing.objects.filter(merchant=merchant).exists()
    assert not MerchantActivity.objects.filter(merchant=merchant).exists()


def test_tier_errors_land_on_the_tier_row(client, merchant):
    login(client, merchant)
    post = {
        **BASE,
        **RULE_POSTS["tiered"][0],
        "tier_0_up_to": "10",
        "tier_1_up_to": "5",
        "tier_1_unit_price": "1",
        "tier_2_up_to": "",
        "tier_2_unit_price": "0.5",
    }
    response = client.post(reverse("merchant:listing_create"), post)
    assert response.status_code == 200
    assert "tier_1_up_to" in response.context["form"].errors
    assert not Listing.objects.exists()


def test_fixed_price_above_the_ceiling_is_refused_on_the_ceiling(client, merchant):
    login(client, merchant)
    post = {**BASE, **RULE_POSTS["fixed"][0], "price": "30.00", "max_amount": "20.00"}
    response = client.post(reverse("merchant:listing_create"), post)
    assert "max_amount" in response.context["form"].errors
    assert not Listing.objects.exists()


def test_rule_fields_partial_changes_with_the_kind(client, merchant):
    login(client, merchant)
    url = reverse("merchant:listing_rule_fields")
    express = client.get(url, {**BASE, "rule_kind": "express"}, headers={"HX-Request": "true"}).content.decode()
    assert 'name="first_weight_fee"' in express and 'name="unit_price"' not in express
    tiered = client.get(url, {**BASE, "rule_kind": "tiered", "unit": "kwh"}).content.decode()
    assert 'name="tier_4_unit_price"' in tiered and 'name="first_weight_fee"' not in tiered
    assert "<html" not in tiered  # only the fieldset


# --------------------------------------------------------------------------- preview


def test_preview_of_the_issue_example_1_h_38_min_at_1_per_hour(client, merchant):
    login(client, merchant)
    query = {
        **BASE,
        **RULE_POSTS["per_unit"][0],
        "sample_hours": "1",
        "sample_minutes": "38",
    }
    response = client.get(reverse("merchant:listing_preview"), query)
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.total == D("2.00")  # a started hour is billed in full
    assert preview.sentence.startswith("1 h 38 min at ¥1.00/hour")
    assert preview.sentence.endswith("→ ¥2.00")
    assert "→ ¥2.00" in response.content.decode()
    assert "<html" not in response.content.decode()


def test_preview_without_round_up_and_with_cap(client, merchant):
    login(client, merchant)
    query = {**BASE, **RULE_POSTS["per_unit"][0], "round_up": "", "sample_hours": "30", "sample_minutes": "0"}
    preview = client.get(reverse("merchant:listing_preview"), query).context["preview"]
    # 24 h capped at ¥10, then 6 h at ¥1.
    assert preview.total == D("16.00")
    assert [line.amount for line in preview.lines] == [D("30.00"), D("14.00")]


def test_preview_figures_for_tiered_express_and_fixed(merchant):
    tiered = parse_rule(RULE_POSTS["tiered"][1])
    # 16 kWh, 1 free → 10 × 1.20 + 5 × 0.90
    assert bill_preview(tiered, {"sample_quantity": D(16)}).total == D("16.50")
    express = parse_rule(RULE_POSTS["express"][1])
    parcel = bill_preview(
        express, {"sample_weight": D("2.5"), "sample_packaging": True, "sample_declared_value": D(500)}
    )
    # 12 first kg + 2 × 2 additional (2 started kg) + 3 packaging + max(5.00, 1.00) insurance
    assert parcel.total == D("24.00")
    fixed = bill_preview(parse_rule(RULE_POSTS["fixed"][1]), {}, max_amount=D("10.00"))
    assert (fixed.total, fixed.over_ceiling) == (D("15.50"), True)


def test_preview_of_an_unfinished_rule_says_what_is_missing(client, merchant):
    login(client, merchant)
    response = client.get(reverse("merchant:listing_preview"), {"rule_kind": "per_unit", "unit": "hour"})
    assert response.status_code == 200
    assert response.context.get("preview") is None
    assert response.context["preview_errors"]


def test_detail_page_preview_uses_the_stored_rule(client, merchant):
    login(client, merchant, MemberRole.VIEWER)
    listing = ListingFactory(merchant=merchant)  # ¥1/hour, rounded up, capped ¥10 per 24 h
    response = client.get(reverse("merchant:listing_preview"), {"listing": listing.pk, "sample_hours": "3"})
    assert response.context["preview"].total == D("3.00")


# --------------------------------------------------------------------------- badge, pause, resume


def test_badge_snippet_links_to_the_catalogue_listing(client, merchant):
    listing = ListingFactory(merchant=merchant)
    login(client, merchant, MemberRole.VIEWER)
    response = client.get(reverse("merchant:listing", args=[listing.pk]))
    snippet = response.context["snippet"]
    url = f"http://testserver{reverse('shop:listing', args=[listing.pk])}"
    assert snippet.startswith(f'<a href="{url}"')
    assert "¥1.00/hour" in snippet
    # shown rendered and as escaped text to copy
    assert snippet in response.content.decode()
    assert "&lt;a href=" in response.content.decode()
    assert client.get(url).status_code == 200


def test_badge_snippet_is_marked_safe_by_format_html_not_by_the_template(client, merchant):
    listing = ListingFactory(merchant=merchant, title="<script>x</script>")
    login(client, merchant, MemberRole.VIEWER)
    response = client.get(reverse("merchant:listing", args=[listing.pk]))
    assert isinstance(response.context["snippet"], SafeString)
    preview = re.search(r'data-testid="badge-preview">(.*?)</div>', response.content.decode(), re.S).group(1)
    assert preview.strip() == str(response.context["snippet"])
    assert "<script>" not in response.content.decode().split('data-testid="badge-preview"')[1]
    template = (django_settings.BASE_DIR / "templates/merchants/listing_detail.html").read_text()
    assert "snippet|safe" not in template


def test_pause_and_resume_with_activity_lines(client, merchant):
    listing = ListingFactory(merchant=merchant)
    login(client, merchant, MemberRole.OPERATOR)
    assert client.post(reverse("merchant:listing_pause", args=[listing.pk])).status_code == 302
    listing.refresh_from_db()
    assert listing.status == ListingStatus.PAUSED
    client.post(reverse("merchant:listing_resume", args=[listing.pk]))
    listing.refresh_from_db()
    assert listing.status == ListingStatus.ACTIVE
    actions = list(MerchantActivity.objects.filter(merchant=merchant).order_by("id").values_list("action", flat=True))
    assert actions == ["listing.pause", "listing.resume"]


def test_pausing_a_paused_listing_is_refused_without_a_log_line(client, merchant):
    listing = ListingFactory(merchant=merchant, status=ListingStatus.PAUSED)
    login(client, merchant)
    response = client.post(reverse("merchant:listing_pause", args=[listing.pk]), follow=True)
    assert "cannot be paused" in response.content.decode()
    assert not MerchantActivity.objects.filter(merchant=merchant).exists()


def test_pause_ignores_an_offsite_next(client, merchant):
    listing = ListingFactory(merchant=merchant)
    login(client, merchant)
    response = client.post(reverse("merchant:listing_pause", args=[listing.pk]), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("merchant:listings")


# --------------------------------------------------------------------------- CSV import

GOOD_CSV = (
    "title,scenario,max_amount,rule_kind,unit,unit_price,cap_per_24h,round_up,price,tiers\r\n"
    "充电 1号,ebike_charging,20.00,per_unit,hour,1.00,10.00,yes,,\r\n"
    "游泳单次,swimming_fitness,100.00,fixed,,,,,45.00,\r\n"
    "快充,ebike_charging,50.00,tiered,kwh,,,,,10:1.20;:0.90\r\n"
)


def upload(content: str | bytes, name: str = "listings.csv") -> SimpleUploadedFile:
    data = content.encode("utf-8-sig") if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="text/csv")


def test_import_dry_run_saves_nothing_and_offers_the_import(client, merchant):
    login(client, merchant)
    response = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)})
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [row.ok for row in rows] == [True, True, True]
    assert [row.line for row in rows] == [2, 3, 4]
    assert response.context["token"]
    assert not Listing.objects.exists()
    assert not MerchantActivity.objects.exists()


def test_import_dry_run_reports_bad_rows_by_line_and_field(client, merchant):
    login(client, merchant)
    bad = GOOD_CSV + "坏行,ebike_charging,abc,per_unit,hour,1.00001,,,,\r\n,unknown,10,fixed,,,,,5.00,\r\n"
    response = client.post(reverse("merchant:listing_import"), {"file": upload(bad)})
    rows = response.context["rows"]
    assert response.context["bad_count"] == 2
    assert rows[3].line == 5 and set(rows[3].errors) == {"max_amount", "unit_price"}
    assert rows[4].line == 6 and {"title", "scenario"} <= set(rows[4].errors)
    assert "token" not in response.context
    assert 'data-line="5"' in response.content.decode()
    assert not Listing.objects.exists()


def test_import_file_errors_are_reported(client, merchant):
    login(client, merchant)
    response = client.post(reverse("merchant:listing_import"), {"file": upload("title,price\r\nA,1\r\n")})
    assert "Columns missing" in response.context["file_error"]
    gbk = "title,scenario,max_amount,rule_kind,price\r\n直播好物,live_shopping,99.00,fixed,49.00\r\n".encode("gb18030")
    response = client.post(reverse("merchant:listing_import"), {"file": upload(gbk)})
    assert [row.ok for row in response.context["rows"]] == [True]


def test_import_runs_in_the_background_and_creates_all_rows(client, merchant, django_capture_on_commit_callbacks):
    member = login(client, merchant, MemberRole.OPERATOR)
    token = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)}).context["token"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("merchant:listing_import_run"), {"token": token})
    task = MerchantTask.objects.get(merchant=merchant)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("merchant:task", args=[task.pk]))
    assert len(callbacks) == 1  # the task is queued for the cluster when the request commits
    assert not Listing.objects.exists()
    assert merchant_task_run(task.pk) == MerchantTaskStatus.SUCCEEDED
    task.refresh_from_db()
    assert (task.done, task.total, task.result["created"]) == (3, 3, 3)
    titles = sorted(Listing.objects.filter(merchant=merchant).values_list("title", flat=True))
    assert titles == ["充电 1号", "快充", "游泳单次"]
    line = MerchantActivity.objects.get(merchant=merchant, action="listing.import")
    assert (line.user_id, line.detail["count"]) == (member.user_id, 3)


def test_import_token_of_another_merchant_or_forged_is_refused(client, merchant):
    login(client, merchant)
    token = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)}).context["token"]
    other = MerchantFactory(categories=ALL_CATEGORIES)
    client.force_login(MerchantMemberFactory(merchant=other).user)
    assert client.post(reverse("merchant:listing_import_run"), {"token": token}).status_code == 302
    assert client.post(reverse("merchant:listing_import_run"), {"token": token + "x"}).status_code == 302
    assert not MerchantTask.objects.exists()
    assert not Listing.objects.exists()


def test_import_token_works_once(client, merchant, django_capture_on_commit_callbacks):
    login(client, merchant)
    token = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)}).context["token"]
    first = client.post(reverse("merchant:listing_import_run"), {"token": token})
    assert first["Location"].startswith(reverse("merchant:task", args=[MerchantTask.objects.get().pk]))
    second = client.post(reverse("merchant:listing_import_run"), {"token": token}, follow=True)
    assert second.redirect_chain[-1][0] == reverse("merchant:listing_import")
    assert "already imported" in second.content.decode()
    assert MerchantTask.objects.filter(merchant=merchant).count() == 1
    # A new dry run of the same file gives a new token that imports again.
    again = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)}).context["token"]
    assert again != token
    client.post(reverse("merchant:listing_import_run"), {"token": again})
    assert MerchantTask.objects.filter(merchant=merchant).count() == 2


def test_import_refuses_an_oversized_upload_before_reading_it(client, merchant, monkeypatch):
    from merchants.portal import listings as listings_views

    login(client, merchant)
    big = upload(GOOD_CSV + "x" * (1024 * 1024))
    assert big.size > 1024 * 1024
    read_calls = []
    real_read_rows = listings_views.read_rows
    monkeypatch.setattr(listings_views, "read_rows", lambda content: read_calls.append(1) or real_read_rows(content))
    response = client.post(reverse("merchant:listing_import"), {"file": big})
    assert "larger than 1 MB" in response.context["file_error"]
    assert read_calls == []
    assert "token" not in response.context


def test_import_is_all_or_nothing_when_a_row_became_invalid(client, merchant, django_capture_on_commit_callbacks):
    login(client, merchant)
    token = client.post(reverse("merchant:listing_import"), {"file": upload(GOOD_CSV)}).context["token"]
    client.post(reverse("merchant:listing_import_run"), {"token": token})
    task = MerchantTask.objects.get(merchant=merchant)
    merchant.categories = [MerchantCategory.EBIKE_CHARGING.value]  # swimming is no longer allowed
    merchant.save()
    assert merchant_task_run(task.pk) == MerchantTaskStatus.FAILED
    task.refresh_from_db()
    assert "1 rows have errors" in task.error
    assert not Listing.objects.exists()


def test_template_csv_checks_clean(client, merchant):
    login(client, merchant)
    response = client.get(reverse("merchant:listing_import_sample"))
    assert response.content.startswith(b"\xef\xbb\xbf")
    checked = client.post(reverse("merchant:listing_import"), {"file": upload(sample_csv(), "t.csv")})
    assert [row.ok for row in checked.context["rows"]] == [True, True, True, True]


def test_new_listing_page_asks_for_a_price_before_previewing(client, merchant):
    login(client, merchant, MemberRole.OPERATOR)
    response = client.get(reverse("merchant:listing_create"))
    assert response.status_code == 200
    assert "preview" not in response.context
    assert response.context["preview_errors"] == ["Price per unit (¥): This field is required."]
    text = response.content.decode()
    assert 'hx-get="/merchant/listings/preview/"' in text
    assert 'name="sample_hours" value="1"' in text and 'name="sample_minutes" value="38"' in text


def test_pages_render_in_chinese(client, merchant, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    listing = ListingFactory(merchant=merchant)
    login(client, merchant)
    client.cookies["django_language"] = "zh-hans"
    detail = client.get(reverse("merchant:listing", args=[listing.pk]), headers={"accept-language": "zh-hans"})
    assert detail.status_code == 200
    assert "¥1.00/小时" in detail.content.decode()
    assert client.get(reverse("merchant:listing_create")).status_code == 200


def test_dry_run_warns_about_titles_that_already_exist(client, merchant):
    ListingFactory(merchant=merchant, title="游泳单次")
    login(client, merchant)
    twice = GOOD_CSV + "充电 1号,ebike_charging,20.00,per_unit,hour,1.00,,,,\r\n"
    rows = client.post(reverse("merchant:listing_import"), {"file": upload(twice)}).context["rows"]
    assert [row.ok for row in rows] == [True, True, True, True]
    assert rows[0].warnings == []
    assert rows[1].warnings == ["You already have a listing with this title; this adds another one."]
    assert rows[3].warnings == ["Same title as line 2."]
