"""Disputes in the merchant portal: the queue and deadlines, answering with evidence, the outcome, access."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.disputes import EVIDENCE_MAX_BYTES, dispute_decide, dispute_open
from bnpl.models import Dispute, DisputeEvent, DisputeEvidence
from bnpl.models.settlement import DisputeOutcome, DisputeStatus
from merchants.choices import MemberRole
from merchants.models import MerchantActivity
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory, UserFactory

pytestmark = pytest.mark.django_db
D = Decimal
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def listing(merchant):
    return ListingFactory(merchant=merchant, max_amount=D("500.00"))


def make_dispute(listing, **kw):
    consumer = ConsumerFactory()
    order = order_in(OrderStatus.COMPLETED, listing=listing, consumer=consumer)
    return dispute_open(
        actor=consumer.user, consumer=consumer, order=order, reason="not_received", description="没收到货", **kw
    )


def raw_dispute(listing, *, respond_by, status=DisputeStatus.OPEN):
    """A dispute row built directly (list rendering only)."""
    consumer = ConsumerFactory()
    order = order_in(OrderStatus.COMPLETED, listing=listing, consumer=consumer)
    return Dispute.objects.create(
        order=order,
        consumer=consumer,
        merchant=listing.merchant,
        reason="faulty",
        disputed_amount=D("5.00"),
        respond_by=respond_by,
        status=status,
    )


def login(client, merchant, role=MemberRole.OPERATOR):
    member = MerchantMemberFactory(merchant=merchant, role=role)
    client.force_login(member.user)
    return member


@pytest.mark.parametrize("role", list(MemberRole))
def test_queue_and_detail_render_for_every_role(client, merchant, listing, role):
    dispute = make_dispute(listing)
    login(client, merchant, role)
    page = client.get(reverse("merchant:disputes"))
    assert page.status_code == 200
    assert dispute.order.out_order_no in page.content.decode()
    detail = client.get(reverse("merchant:dispute", args=[dispute.pk]))
    assert detail.status_code == 200
    assert "没收到货" in detail.content.decode()
    assert detail.context["may_respond"] is (role != MemberRole.VIEWER)


def test_viewer_cannot_respond(client, merchant, listing):
    dispute = make_dispute(listing)
    login(client, merchant, MemberRole.VIEWER)
    response = client.post(reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "我们已发货"})
    assert response.status_code == 403
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN and dispute.response_text == ""


def test_another_merchants_dispute_is_404(client, listing):
    dispute = make_dispute(listing)
    login(client, MerchantFactory(), MemberRole.OWNER)
    assert client.get(reverse("merchant:dispute", args=[dispute.pk])).status_code == 404
    response = client.post(reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "x"})
    assert response.status_code == 404
    assert dispute.order.out_order_no not in client.get(reverse("merchant:disputes")).content.decode()
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN


def test_queue_orders_by_deadline_and_highlights_overdue_and_due_soon(client, merchant, listing):
    now = timezone.now()
    later = raw_dispute(listing, respond_by=now + timedelta(days=5))
    overdue = raw_dispute(listing, respond_by=now - timedelta(hours=2))
    soon = raw_dispute(listing, respond_by=now + timedelta(hours=3))
    raw_dispute(listing, respond_by=now - timedelta(days=1), status=DisputeStatus.WITHDRAWN)
    login(client, merchant)
    response = client.get(reverse("merchant:disputes"))
    assert [d.pk for d in response.context["page"].object_list] == [overdue.pk, soon.pk, later.pk]
    text = response.content.decode()
    assert f'class="table-danger" data-dispute="{overdue.pk}"' in text
    assert f'class="table-warning" data-dispute="{soon.pk}"' in text
    assert f'class="" data-dispute="{later.pk}"' in text
    closed = client.get(reverse("merchant:disputes"), {"tab": "closed"})
    assert len(closed.context["page"].object_list) == 1


def test_queue_query_count_is_constant(client, merchant, listing):
    login(client, merchant)
    now = timezone.now()
    for hours in range(2):
        raw_dispute(listing, respond_by=now + timedelta(hours=hours + 1))
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("merchant:disputes"))
    for hours in range(18):
        raw_dispute(listing, respond_by=now + timedelta(hours=hours + 10))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("merchant:disputes"))
    assert len(response.context["page"].object_list) == 20
    assert len(many) == len(few)


def test_respond_with_text_and_evidence(client, merchant, listing):
    dispute = make_dispute(listing)
    member = login(client, merchant, MemberRole.FINANCE)
    files = [
        SimpleUploadedFile("签收单.pdf", PDF, content_type="application/pdf"),
        SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
    ]
    response = client.post(
        reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "快递已签收，附签收单", "files": files}
    )
    assert response.status_code == 302
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.MERCHANT_RESPONDED
    assert dispute.response_text == "快递已签收，附签收单"
    evidence = list(DisputeEvidence.objects.filter(dispute=dispute).order_by("id"))
    assert len(evidence) == 2
    assert all(item.uploaded_by_id == member.user_id for item in evidence)
    event = DisputeEvent.objects.get(dispute=dispute, to_status=DisputeStatus.MERCHANT_RESPONDED)
    assert event.actor_id == member.user_id
    line = MerchantActivity.objects.get(merchant=merchant, action="dispute.respond")
    assert line.detail == {"dispute": dispute.pk, "files": 2}
    # The merchant can open its evidence; another merchant cannot.
    url = reverse("merchant:dispute_evidence", args=[dispute.pk, evidence[0].pk])
    download = client.get(url)
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PDF
    page = client.get(reverse("merchant:dispute", args=[dispute.pk])).content.decode()
    assert url in page and "快递已签收" in page
    login(client, MerchantFactory(), MemberRole.OWNER)
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("virus.exe", b"MZ\x90\x00" + b"\x00" * 20, "is not a photo"),
        ("fake.pdf", b"<html>not a pdf</html>", "is not a photo"),
        ("big.pdf", b"%PDF-" + b"0" * EVIDENCE_MAX_BYTES, "at most 5 MB"),
    ],
)
def test_bad_evidence_is_refused_keeping_the_text(client, merchant, listing, name, content, message):
    dispute = make_dispute(listing)
    login(client, merchant)
    upload = SimpleUploadedFile(name, content)
    response = client.post(
        reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "保留这段文字", "files": [upload]}
    )
    assert response.status_code == 200
    assert message in response.context["form"].file_error
    assert "保留这段文字" in response.content.decode()
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN
    assert not DisputeEvidence.objects.exists()
    assert not MerchantActivity.objects.filter(action="dispute.respond").exists()


def test_empty_response_is_a_field_error(client, merchant, listing):
    dispute = make_dispute(listing)
    login(client, merchant)
    response = client.post(reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": ""})
    assert response.status_code == 200
    assert "text" in response.context["form"].errors
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN


def test_overdue_dispute_cannot_be_answered(client, merchant, listing):
    dispute = make_dispute(listing)
    Dispute.objects.filter(pk=dispute.pk).update(respond_by=timezone.now() - timedelta(minutes=1))
    login(client, merchant)
    detail = client.get(reverse("merchant:dispute", args=[dispute.pk]))
    assert detail.context["overdue"] is True and detail.context["may_respond"] is False
    response = client.post(reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "晚了"})
    assert response.status_code == 200
    assert "deadline" in str(response.context["form"].non_field_errors())
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN


def test_outcome_is_shown_once_decided(client, merchant, listing):
    dispute = make_dispute(listing)
    staff = UserFactory(username="risk", is_staff=True)
    dispute_decide(actor=staff, dispute=dispute, outcome=DisputeOutcome.MERCHANT_WON, reason="签收记录完整")
    login(client, merchant, MemberRole.VIEWER)
    response = client.get(reverse("merchant:dispute", args=[dispute.pk]))
    text = response.content.decode()
    assert "Merchant won" in text and "签收记录完整" in text
    closed = client.get(reverse("merchant:disputes"), {"tab": "closed"})
    assert "Merchant won" in closed.content.decode()


def test_detail_query_count_is_constant_in_evidence(client, merchant, listing):
    login(client, merchant)
    few_files = make_dispute(listing)
    many_files = make_dispute(listing)
    for dispute, count in ((few_files, 1), (many_files, 8)):
        uploads = [SimpleUploadedFile(f"p{n}.png", PNG) for n in range(count)]
        client.post(reverse("merchant:dispute_respond", args=[dispute.pk]), {"text": "证据", "files": uploads})
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("merchant:dispute", args=[few_files.pk]))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("merchant:dispute", args=[many_files.pk]))
    assert len(response.context["evidence"]) == 8
    assert len(many) == len(few)
