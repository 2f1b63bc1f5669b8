"""Background work of the merchant portal: the generic MerchantTask runner and its progress page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from bnpl.exceptions import NotAllowed
from merchants.choices import MemberRole, MerchantTaskKind, MerchantTaskStatus
from merchants.models import MerchantTask
from merchants.task_runner import TaskOutcome, merchant_task_run, merchant_task_start
from tests.factories import MerchantMemberFactory

pytestmark = pytest.mark.django_db

CALLS: list[int] = []


def counting_runner(task, progress):
    CALLS.append(task.pk)
    for i in range(3):
        progress(i + 1, 3)
    return TaskOutcome(summary={"rows": 3, "message": "All done."}, file_name="out.csv", content=b"a,b\n")


def refusing_runner(task, progress):
    raise NotAllowed("Nothing to export.")


def crashing_runner(task, progress):
    raise RuntimeError("boom")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    CALLS.clear()


def _start(member, runner="counting_runner"):
    return merchant_task_start(
        member=member,
        kind=MerchantTaskKind.EXPORT_ORDERS,
        params={"x": 1},
        runner_path=f"tests.bnpl.test_merchant_tasks.{runner}",
    )


def test_start_queues_one_cluster_task_on_commit(django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args))
    member = MerchantMemberFactory()
    with django_capture_on_commit_callbacks(execute=True):
        task = _start(member)
    assert task.status == MerchantTaskStatus.QUEUED and task.merchant == member.merchant
    assert queued == [("merchants.task_runner.merchant_task_run", task.pk)]


def test_run_succeeds_once_even_when_delivered_twice():
    task = _start(MerchantMemberFactory())
    assert merchant_task_run(task.pk) == MerchantTaskStatus.SUCCEEDED
    assert merchant_task_run(task.pk) == MerchantTaskStatus.SUCCEEDED
    assert [task.pk] == CALLS
    task.refresh_from_db()
    assert (task.done, task.total, task.percent) == (3, 3, 100)
    assert task.result == {"rows": 3, "message": "All done."}
    assert task.result_file.read() == b"a,b\n"
    assert task.started_at and task.finished_at


def test_domain_error_fails_with_its_message_and_other_errors_with_a_generic_one():
    member = MerchantMemberFactory()
    refused = _start(member, "refusing_runner")
    crashed = _start(member, "crashing_runner")
    assert merchant_task_run(refused.pk) == MerchantTaskStatus.FAILED
    assert merchant_task_run(crashed.pk) == MerchantTaskStatus.FAILED
    refused.refresh_from_db()
    crashed.refresh_from_db()
    assert refused.error == "Nothing to export."
    assert "boom" not in crashed.error and crashed.error


def test_unknown_runner_is_refused_at_start():
    with pytest.raises((ImportError, AttributeError)):
        _start(MerchantMemberFactory(), "no_such_runner")
    assert not MerchantTask.objects.exists()


@pytest.mark.parametrize("role", [MemberRole.OWNER, MemberRole.OPERATOR])
def test_progress_page_polls_until_done_then_offers_the_download(client, role):
    member = MerchantMemberFactory(role=role)
    task = _start(member)
    client.force_login(member.user)
    url = reverse("merchant:task", args=[task.pk])
    page = client.get(url)
    assert page.status_code == 200 and 'hx-trigger="every 1s"' in page.content.decode()
    merchant_task_run(task.pk)
    partial = client.get(url, headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "every 1s" not in body and "<nav" not in body
    assert "All done." in body and "Rows" in body
    assert reverse("merchant:task_download", args=[task.pk]) in body
    download = client.get(reverse("merchant:task_download", args=[task.pk]))
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"a,b\n"


NO_MANAGE = [MemberRole.FINANCE, MemberRole.VIEWER]


@pytest.mark.parametrize(
    ("kind", "allowed", "refused"),
    [
        (
            MerchantTaskKind.EXPORT_ORDERS,
            [MemberRole.OWNER, MemberRole.OPERATOR],
            [MemberRole.FINANCE, MemberRole.VIEWER],
        ),
        (MerchantTaskKind.IMPORT_LISTINGS, [MemberRole.OPERATOR], [MemberRole.FINANCE, MemberRole.VIEWER]),
    ],
)
def test_task_page_and_download_need_the_capability_that_starts_the_kind(client, kind, allowed, refused):
    starter = MerchantMemberFactory(role=MemberRole.OWNER)
    task = merchant_task_start(
        member=starter, kind=kind, params={}, runner_path="tests.bnpl.test_merchant_tasks.counting_runner"
    )
    merchant_task_run(task.pk)
    urls = [reverse("merchant:task", args=[task.pk]), reverse("merchant:task_download", args=[task.pk])]
    for role in refused:
        client.force_login(MerchantMemberFactory(merchant=starter.merchant, role=role).user)
        assert [client.get(url).status_code for url in urls] == [403, 403], role
    for role in allowed:
        client.force_login(MerchantMemberFactory(merchant=starter.merchant, role=role).user)
        assert [client.get(url).status_code for url in urls] == [200, 200], role


def test_another_merchants_task_is_404(client):
    task = _start(MerchantMemberFactory())
    merchant_task_run(task.pk)
    client.force_login(MerchantMemberFactory().user)
    assert client.get(reverse("merchant:task", args=[task.pk])).status_code == 404
    assert client.get(reverse("merchant:task_download", args=[task.pk])).status_code == 404


def test_download_before_the_task_ends_is_404(client):
    member = MerchantMemberFactory()
    task = _start(member)
    client.force_login(member.user)
    assert client.get(reverse("merchant:task_download", args=[task.pk])).status_code == 404


def test_a_task_whose_worker_died_is_shown_failed(client):
    member = MerchantMemberFactory()
    task = _start(member)
    MerchantTask.objects.filter(pk=task.pk).update(
        status=MerchantTaskStatus.RUNNING, started_at=timezone.now() - timedelta(hours=1)
    )
    fresh = _start(member)
    MerchantTask.objects.filter(pk=fresh.pk).update(status=MerchantTaskStatus.RUNNING, started_at=timezone.now())
    client.force_login(member.user)
    body = client.get(reverse("merchant:task", args=[task.pk]), headers={"HX-Request": "true"}).content.decode()
    assert "stopped before it finished" in body and "every 1s" not in body
    task.refresh_from_db()
    assert task.status == MerchantTaskStatus.FAILED
    assert (
        "every 1s"
        in client.get(reverse("merchant:task", args=[fresh.pk]), headers={"HX-Request": "true"}).content.decode()
    )
    fresh.refresh_from_db()
    assert fresh.status == MerchantTaskStatus.RUNNING
