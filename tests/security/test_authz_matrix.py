"""The authorisation matrix: every URL of the portals and the API × every kind of caller → the status class.

One table (``ROUTES``) says, for each URL name of the namespaces ``merchant``, ``me``, ``shop``, ``pay``,
``accounts`` and ``api``, how to fill its kwargs from one fixture world, which method to use, and which
callers are refused. Merchant-portal expectations come from the view's ``capability`` (set by
``member_required``) and ``CAPABILITY_ROLES``, so only the exceptions are written down.

Outcomes are classes, not exact codes:

* ``LOGIN`` — a redirect to the portal's log-in page (anonymous visitors of the portals);
* ``FORBIDDEN`` — 403 (the wrong role, or a signed-in user of the wrong kind);
* ``NOT_FOUND`` — 404 (another tenant's or another consumer's id: never a 403 that confirms it exists);
* ``UNAUTHENTICATED`` — 401 (the API without a valid key);
* ``OK`` — anything the caller is let through to: 200, 201, 302 (but not to a log-in page), 400, 405, 409,
  422 — never 401, 403, 404 or 5xx.

A coverage test fails when a URL name in those namespaces has no entry, so a new view must be added here.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from bnpl.choices import OrderStatus
from bnpl.incentives import campaign_create
from bnpl.models import Dispute, DisputeEvidence, Payout, SettlementBatch
from bnpl.models.settlement import DisputeStatus
from bnpl.notifications.models import Notification
from bnpl.services import agreement_sign, agreement_signup_create
from merchants.choices import ConfirmMode, MemberRole, MerchantTaskKind
from merchants.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from merchants.portal.access import CAPABILITY_ROLES, Capability
from merchants.services import api_key_create, api_key_revoke, invitation_create
from merchants.task_runner import merchant_task_run, merchant_task_start
from tests.bnpl.charging_helpers import fund
from tests.bnpl.helpers import order_in
from tests.factories import ConsumerFactory, ListingFactory, MerchantFactory, MerchantMemberFactory, UserFactory

pytestmark = pytest.mark.django_db

NAMESPACES = ("merchant", "me", "shop", "pay", "accounts", "api")

OK, LOGIN, FORBIDDEN, NOT_FOUND, UNAUTHENTICATED = "ok", "login", "403", "404", "401"

ROLE_ACTORS = {
    "owner": MemberRole.OWNER,
    "operator": MemberRole.OPERATOR,
    "finance": MemberRole.FINANCE,
    "viewer": MemberRole.VIEWER,
}
PORTAL_ACTORS = ("anonymous", "consumer", "other_consumer", *ROLE_ACTORS, "other_owner", "staff")
API_ACTORS = ("no_key", "key", "other_key", "revoked_key", "test_key")


# --------------------------------------------------------------------------------------------- the world


@dataclass
class World:
    users: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)


def build_world() -> World:
    """Merchant A (a member of each role) and merchant B; consumer A (with everything) and consumer B."""
    world = World()
    merchant_a, merchant_b = MerchantFactory(), MerchantFactory()
    members = {name: MerchantMemberFactory(merchant=merchant_a, role=role) for name, role in ROLE_ACTORS.items()}
    world.users.update({name: member.user for name, member in members.items()})
    world.users["other_owner"] = MerchantMemberFactory(merchant=merchant_b, role=MemberRole.OWNER).user
    world.users["staff"] = UserFactory(is_staff=True, is_superuser=True)
    consumer_a, consumer_b = ConsumerFactory(), ConsumerFactory()
    world.users["consumer"], world.users["other_consumer"] = consumer_a.user, consumer_b.user
    ListingFactory(merchant=merchant_b)

    listing = ListingFactory(merchant=merchant_a, max_amount=Decimal("500.00"))
    agreement_listing = ListingFactory(merchant=merchant_a, confirm_mode=ConfirmMode.AGREEMENT)
    owner = members["owner"].user

    order = order_in(OrderStatus.ACTIVE, listing=listing, consumer=consumer_a, out_order_no="A-ORDER-1")
    pending = order_in(OrderStatus.PENDING_CONFIRMATION, listing=listing, consumer=consumer_a)
    disputed = order_in(OrderStatus.COMPLETED, listing=listing, consumer=consumer_a)
    agreement = agreement_sign(actor=None, consumer=consumer_a, listing=agreement_listing)
    signup = agreement_signup_create(
        actor=None, merchant=merchant_a, listing=agreement_listing, out_agreement_no="S-1", consumer=consumer_a
    )
    dispute = Dispute.objects.create(
        order=disputed,
        consumer=consumer_a,
        merchant=merchant_a,
        reason="faulty",
        disputed_amount=Decimal("5.00"),
        respond_by=timezone.now() + timedelta(days=3),
        status=DisputeStatus.OPEN,
    )
    evidence = DisputeEvidence(dispute=dispute, uploaded_by=consumer_a.user)
    evidence.file.save("evidence.txt", ContentFile(b"receipt"), save=True)
    batch = SettlementBatch.objects.create(
        merchant=merchant_a,
        business_date=timezone.localdate(),
        cutoff_at=timezone.now(),
        gross_amount=Decimal("10.00"),
        fee_amount=Decimal("0.06"),
        net_amount=Decimal("9.94"),
        item_count=0,
    )
    Payout.objects.create(batch=batch, merchant=merchant_a, amount=Decimal("9.94"))
    task = merchant_task_start(
        member=members["owner"],
        kind=MerchantTaskKind.EXPORT_ORDERS,
        params={},
        runner_path="tests.bnpl.test_merchant_tasks.counting_runner",
    )
    merchant_task_run(task.pk)
    spare_key, _token = api_key_create(actor=None, merchant=merchant_a, mode="live", label="spare")
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant_a, url="https://hooks.example.com/a", event_types=["order.*"], secret_encrypted="x"
    )
    event = WebhookEvent.objects.create(
        uuid=uuid.uuid4(), merchant=merchant_a, type="order.completed", ordering_key="order:1", payload={"id": 1}
    )
    delivery = WebhookDelivery.objects.create(event=event, endpoint=endpoint, ordering_key="order:1", status="failed")
    invitation, join_token = invitation_create(
        actor=owner, merchant=merchant_a, role=MemberRole.VIEWER, email="x@example.com"
    )
    campaign = campaign_create(
        actor=owner, merchant=merchant_a, title="Keep 3", goal_count=3, benefit_kind="points", benefit_points=10,
        budget_amount="100.00",
    )  # fmt: skip
    target = MerchantMemberFactory(merchant=merchant_a, role=MemberRole.VIEWER)  # its role is changed
    removed = MerchantMemberFactory(merchant=merchant_a, role=MemberRole.VIEWER)  # removed
    source = fund(consumer_a)
    notification = Notification.objects.create(
        user=consumer_a.user,
        consumer=consumer_a,
        kind="test",
        dedupe_key=f"matrix:{secrets.token_hex(4)}",
        language="en",
        subject="Hello",
        body="Hello",
        created_at=timezone.now(),
    )

    for name in ("key", "test_key", "revoked_key"):
        mode = "test" if name == "test_key" else "live"
        api_key, world.keys[name] = api_key_create(actor=None, merchant=merchant_a, mode=mode, label=name)
        if name == "revoked_key":
            api_key_revoke(actor=None, api_key=api_key)
    _other, world.keys["other_key"] = api_key_create(actor=None, merchant=merchant_b, mode="live", label="b")

    world.ids = {
        "order_id": order.pk,
        "out_order_no": order.out_order_no,
        "pending_token": pending.confirmation_token,
        "agreement_id": agreement.pk,
        "signup_id": signup.pk,
        "signup_token": signup.token,
        "listing_id": listing.pk,
        "dispute_id": dispute.pk,
        "evidence_id": evidence.pk,
        "batch_id": batch.pk,
        "task_id": task.pk,
        "key_id": spare_key.pk,
        "endpoint_id": endpoint.pk,
        "delivery_id": delivery.pk,
        "invitation_id": invitation.pk,
        "join_token": join_token,
        "campaign_id": campaign.pk,
        "member_id": target.pk,
        "removed_member_id": removed.pk,
        "merchant_id": merchant_a.pk,
        "source_id": source.pk,
        "notification_id": notification.pk,
    }
    return world


# --------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Route:
    """How to call one URL name (a table key ``name#variant`` calls the same URL a second way).

    ``kwargs`` / ``data`` — URL kwargs and POST body; ``"@x"`` is the world's id ``x``, else a literal.
    ``scoped`` — an ``@`` value names an object of merchant A / consumer A, so the other tenant gets 404.
    ``expect`` — explicit outcomes per actor (a class, or an exact status), overriding the derived ones.
    ``capability`` — overrides the view's capability (a task page needs the capability of its kind).
    ``actors`` — the callers and their order, when an earlier call would change what a later one sees.
    """

    kwargs: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    expect: dict[str, str | int] = field(default_factory=dict)
    capability: Capability | None = None
    data: dict[str, Any] = field(default_factory=dict)
    actors: tuple[str, ...] = ()  # the callers, in this order (default: all of the table's kind)

    @property
    def scoped(self) -> bool:
        return any(str(value).startswith("@") for value in (*self.kwargs.values(), *self.data.values()))


def ids(*names: str, **others: str) -> dict[str, str]:
    """Kwargs named like world ids, plus others: ``"@name"`` is the world's id ``name``, else a literal."""
    return {**{name: f"@{name}" for name in names}, **others}


def fill(world: World, values: dict[str, Any]) -> dict[str, Any]:
    return {key: world.ids[value[1:]] if str(value).startswith("@") else value for key, value in values.items()}


P = "POST"
PAY_POSTERS = ("anonymous", "other_consumer", "owner", "staff", "consumer")
REASON = {"reason": "authorisation matrix"}
USAGE = {"merchant_event_id": "M-1", "quantity": "1", "occurred_at": "2026-11-20T10:00:00+08:00"}
EVERYONE_OK = dict.fromkeys(PORTAL_ACTORS, OK)
APPLICANT_OK = {"consumer": OK, "other_consumer": OK, "staff": OK}

ROUTES: dict[str, Route] = {
    # ---- the merchant portal: expectations from the capability, exceptions listed
    "merchant:login": Route(expect=EVERYONE_OK),
    "merchant:logout": Route(method=P, expect=dict.fromkeys(PORTAL_ACTORS, LOGIN)),  # out, then to the log-in
    "merchant:signup": Route(expect=EVERYONE_OK),
    "merchant:no_merchant": Route(expect=EVERYONE_OK),  # the "start a merchant" welcome page
    "merchant:join": Route(ids(token="@join_token"), expect=EVERYONE_OK),
    # switching to merchant A: its members may; merchant B's owner gets 404, not a confirmation
    "merchant:switch": Route(method=P, data={"merchant": "@merchant_id"}),
    # the onboarding wizard (applicant_required): a signed-in user without a merchant may start one,
    # a member needs MANAGE_ACCOUNT
    "merchant:onboarding": Route(expect=APPLICANT_OK),
    "merchant:onboarding_check_uscc": Route(expect=APPLICANT_OK),
    "merchant:onboarding_submit": Route(method=P, expect=APPLICANT_OK),
    "merchant:onboarding_step": Route(ids(step="company"), expect=APPLICANT_OK),
    "merchant:account": Route(),
    "merchant:team": Route(),
    "merchant:team_invite": Route(method=P),
    "merchant:team_invitation_revoke": Route(ids("invitation_id"), method=P),
    "merchant:team_member_role": Route(ids("member_id"), method=P),
    "merchant:team_member_remove": Route(ids(member_id="@removed_member_id"), method=P),
    "merchant:activity": Route(),
    "merchant:developer": Route(),
    "merchant:api_key_create": Route(method=P),
    "merchant:api_key_revoke": Route(ids("key_id"), method=P),
    "merchant:webhook_create": Route(),
    "merchant:webhook_edit": Route(ids("endpoint_id")),
    "merchant:webhook_rotate": Route(ids("endpoint_id"), method=P),
    "merchant:webhook_deliveries": Route(ids("endpoint_id")),
    "merchant:webhook_redeliver": Route(ids("delivery_id"), method=P),
    "merchant:listings": Route(),
    "merchant:listing_create": Route(),
    "merchant:listing_preview": Route(method=P),
    "merchant:listing_rule_fields": Route(),
    "merchant:listing_import": Route(),
    "merchant:listing_import_run": Route(method=P),
    "merchant:listing_import_sample": Route(),
    "merchant:listing": Route(ids("listing_id")),
    "merchant:listing_edit": Route(ids("listing_id")),
    "merchant:listing_pause": Route(ids("listing_id"), method=P),
    "merchant:listing_resume": Route(ids("listing_id"), method=P),
    "merchant:dashboard": Route(),
    "merchant:orders": Route(),
    "merchant:order_export": Route(method=P),
    "merchant:order_detail": Route(ids("order_id")),
    "merchant:order_complete": Route(ids("order_id"), method=P),
    "merchant:order_lower": Route(ids("order_id"), method=P),
    "merchant:order_cancel": Route(ids("order_id"), method=P),
    "merchant:order_refund": Route(ids("order_id"), method=P),
    "merchant:order_collect": Route(ids("order_id"), method=P),
    "merchant:order_paid_elsewhere": Route(ids("order_id"), method=P),
    # an export task: its page and file need the capability that starts an export, not just VIEW
    "merchant:task": Route(ids("task_id"), capability=Capability.MANAGE_ORDERS),
    "merchant:task_download": Route(ids("task_id"), capability=Capability.MANAGE_ORDERS),
    "merchant:settlements": Route(),
    "merchant:settlement": Route(ids("batch_id")),
    "merchant:settlement_statement": Route(ids("batch_id", fmt="csv")),
    "merchant:disputes": Route(),
    "merchant:dispute": Route(ids("dispute_id")),
    "merchant:dispute_respond": Route(ids("dispute_id"), method=P),
    "merchant:dispute_evidence": Route(ids("dispute_id", "evidence_id")),
    # the list is for every role (it shows the campaigns); creating and acting need MANAGE_CAMPAIGNS
    "merchant:campaigns": Route(),
    "merchant:campaign_create": Route(method=P),
    "merchant:campaign_action": Route(ids("campaign_id", action="pause"), method=P),
    # ---- my pay-later: consumers only; another consumer's ids are 404
    "me:home": Route(),
    "me:orders": Route(),
    "me:order": Route(ids("order_id")),
    "me:order_pay": Route(ids("order_id"), method=P),
    "me:order_cancel": Route(ids("order_id"), method=P),
    "me:order_report": Route(ids("order_id"), method=P),
    "me:order_dispute": Route(ids("order_id"), method=P),
    "me:order_dispute_withdraw": Route(ids("order_id"), method=P),
    "me:order_extend": Route(ids("order_id"), method=P),
    "me:agreements": Route(),
    "me:agreement_revoke": Route(ids("agreement_id"), method=P),
    "me:score": Route(),
    "me:payment_methods": Route(),
    "me:payment_method_default": Route(ids("source_id"), method=P),
    "me:settings": Route(),
    "me:spend_cap": Route(method=P),
    "me:verify": Route(method=P),
    "me:export": Route(),
    "me:inbox": Route(),
    "me:inbox_read_all": Route(method=P),
    # someone else's notification id changes nothing and answers like one's own (no existence oracle)
    "me:inbox_read": Route(ids("notification_id"), method=P, expect={"other_consumer": OK}),
    "me:notification_preferences": Route(),
    "me:rewards": Route(),
    # ---- the catalogue: public pages; ordering and signing need a consumer
    "shop:index": Route(expect=EVERYONE_OK),
    "shop:listing": Route(ids("listing_id"), expect=EVERYONE_OK),
    "shop:order": Route(ids("listing_id"), method=P),
    "shop:sign": Route(ids("listing_id"), method=P),
    # ---- hosted pay pages: the token is the capability; the result page is the order's consumer's
    # The pay pages are bearer links: anyone holding one sees what is asked (and may log in on the spot);
    # only the consumer the merchant named may confirm or sign. Another consumer's consent is refused
    # (400, the form's error) and leaves the link usable: consumer A, last, still confirms it.
    "pay:confirm": Route(ids(token="@pending_token"), expect=EVERYONE_OK),
    "pay:confirm#post": Route(
        ids(token="@pending_token"),
        method=P,
        data={"consent": "on"},
        actors=PAY_POSTERS,
        expect={"other_consumer": 400, "owner": LOGIN, "staff": LOGIN},
    ),
    "pay:agreement": Route(ids(token="@signup_token"), expect=EVERYONE_OK),
    "pay:agreement#post": Route(
        ids(token="@signup_token"),
        method=P,
        data={"consent": "on"},
        actors=PAY_POSTERS,
        expect={"other_consumer": 400, "owner": LOGIN, "staff": LOGIN},
    ),
    "pay:result": Route(ids("order_id")),
    # ---- consumer accounts: public
    "accounts:login": Route(expect=EVERYONE_OK),
    "accounts:logout": Route(method=P, expect=EVERYONE_OK),
    "accounts:signup": Route(expect=EVERYONE_OK),
    # ---- the API: no key / revoked key → 401; another merchant's key and a test key on live data → 404
    "api:orders": Route(),
    "api:order-by-out-no": Route(ids("out_order_no")),
    "api:order": Route(ids("order_id")),
    "api:order-usage": Route(ids("order_id"), method=P, data=USAGE),
    "api:order-complete": Route(ids("order_id"), method=P),
    "api:order-cancel": Route(ids("order_id"), method=P, data=REASON),
    "api:order-sync": Route(ids("order_id"), method=P, data=REASON),
    "api:usage-batch": Route(method=P),
    "api:agreements": Route(),
    "api:agreement": Route(ids("agreement_id")),
    "api:agreement-close": Route(ids("agreement_id"), method=P),
    "api:agreement-signups": Route(method=P),
    "api:agreement-signup": Route(ids("signup_id")),
    "api:listings": Route(),
    "api:listing": Route(ids("listing_id"), expect={"test_key": OK}),  # listings serve both modes
    "api:listing-pause": Route(ids("listing_id"), method=P),
    "api:listing-resume": Route(ids("listing_id"), method=P),
    "api:order-refund": Route(ids("order_id"), method=P, data={**REASON, "amount": "1.00", "out_refund_no": "R-1"}),
    "api:order-modify": Route(ids("order_id"), method=P, data={**REASON, "amount": "1.00"}),
    "api:order-collect": Route(ids("order_id"), method=P),
    "api:settlements": Route(),
    # A batch's mode is its orders' (test-mode when every order line is a sandbox consumer's): live here.
    "api:settlement-statement": Route(ids("batch_id")),
    "api:settlement-statement-csv": Route(ids("batch_id")),
    # the catch-all answers 404 before authentication: an unknown path says nothing about keys
    "api:not-found": Route(expect=dict.fromkeys(API_ACTORS, NOT_FOUND)),
}


# --------------------------------------------------------------------------------------------- expectations


def url_names() -> dict[str, Any]:
    """Every named URL of NAMESPACES → its callback, found by walking the resolver."""
    found: dict[str, Any] = {}

    def walk(resolver: URLResolver, namespace: str | None) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and pattern.name and namespace in NAMESPACES:
                found[f"{namespace}:{pattern.name}"] = pattern.callback

    walk(get_resolver(), None)
    return found


def expected(name: str, route: Route, actor: str, callback: Any) -> str | int:
    if actor in route.expect:
        return route.expect[actor]
    namespace = name.split(":")[0]
    if namespace == "api":
        if actor in {"no_key", "revoked_key"}:
            return UNAUTHENTICATED
        if actor == "other_key" and route.scoped:
            return NOT_FOUND
        if actor == "test_key" and route.scoped:
            return FORBIDDEN  # livemode_mismatch: a test key acts on sandbox consumers' objects only
        return OK
    if actor == "anonymous":
        return LOGIN
    if namespace == "merchant":
        if actor in {"consumer", "other_consumer", "staff"}:
            return FORBIDDEN  # signed in without a membership
        capability = route.capability or callback.capability
        if actor == "other_owner":
            return NOT_FOUND if route.scoped else OK
        return OK if ROLE_ACTORS[actor] in CAPABILITY_ROLES[capability] else FORBIDDEN
    # consumer-facing namespaces (me, shop, pay)
    if actor == "consumer":
        return OK
    if actor == "other_consumer":
        return NOT_FOUND if route.scoped and namespace in {"me", "pay"} else OK
    return FORBIDDEN  # merchant members and staff are not consumers


def classify(response: Any, namespace: str) -> str:
    status = response.status_code
    if status in (401, 403, 404) or status >= 500:
        return str(status) if status < 500 else "5xx"
    if status == 302:
        login = reverse("merchant:login" if namespace == "merchant" else "accounts:login")
        if response["Location"].split("?")[0] == login:
            return LOGIN
    return OK


def call_portal(world: World, name: str, route: Route, actor: str) -> Any:
    client = Client()
    if actor != "anonymous":
        client.force_login(world.users[actor])
    url = reverse(name, kwargs=resolve_kwargs(world, route))
    return client.post(url, fill(world, route.data)) if route.method == "POST" else client.get(url)


def call_api(world: World, name: str, route: Route, actor: str) -> Any:
    headers = {} if actor == "no_key" else {"Authorization": f"Bearer {world.keys[actor]}"}
    url = reverse(name, kwargs=resolve_kwargs(world, route)) if name != "api:not-found" else "/api/v1/nothing-here"
    client = Client()
    if route.method == "POST":
        headers["Idempotency-Key"] = str(uuid.uuid4())
        body = json.dumps(fill(world, route.data))
        return client.post(url, data=body, content_type="application/json", headers=headers)
    return client.get(url, headers=headers)


def resolve_kwargs(world: World, route: Route) -> dict[str, Any]:
    return fill(world, route.kwargs)


def check(names: list[str], actors: tuple[str, ...], caller: Any) -> list[str]:
    world = build_world()
    callbacks = url_names()
    failures = []
    for key in names:
        route, name = ROUTES[key], key.split("#")[0]
        namespace = name.split(":")[0]
        for actor in route.actors or actors:
            want = expected(name, route, actor, callbacks[name])
            try:
                response = caller(world, name, route, actor)
            except Exception as exc:  # a crash is a failure of the matrix, reported with the rest
                failures.append(f"{name} {route.method} as {actor}: expected {want}, raised {exc!r}")
                continue
            got = response.status_code if isinstance(want, int) else classify(response, namespace)
            if got != want:
                failures.append(
                    f"{name} {route.method} as {actor}: expected {want}, got {response.status_code} ({got})"
                )
    return failures


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.BNPL_WEBHOOK_ALLOW_PRIVATE_TARGETS = True


# --------------------------------------------------------------------------------------------- tests


def test_every_url_name_is_in_the_table():
    names = set(url_names())
    table = {key.split("#")[0] for key in ROUTES}
    assert names - table == set(), "add these URL names to ROUTES"
    assert table - names == set(), "these ROUTES entries name no URL"


def test_every_merchant_portal_view_names_a_capability_or_is_an_exception():
    callbacks = url_names()
    for name, route in ROUTES.items():
        if name.startswith("merchant:") and set(route.expect) < set(PORTAL_ACTORS):
            assert isinstance(getattr(callbacks[name], "capability", None), Capability), name


def test_the_derived_matrix_refuses_someone_everywhere_it_should():
    """Guard the table itself: every refused kind of caller is expected to be refused somewhere."""
    callbacks = url_names()
    outcomes: dict[str, set[Any]] = {actor: set() for actor in (*PORTAL_ACTORS, *API_ACTORS)}
    owner_in_portal: set[Any] = set()
    for key, route in ROUTES.items():
        name = key.split("#")[0]
        kind = API_ACTORS if name.startswith("api:") else PORTAL_ACTORS
        for actor in route.actors or kind:
            outcome = expected(name, route, actor, callbacks[name])
            outcomes[actor].add(outcome)
            if name.startswith("merchant:") and actor == "owner":
                owner_in_portal.add(outcome)
    for actor in ("operator", "finance", "viewer", "consumer", "staff"):
        assert FORBIDDEN in outcomes[actor], actor
    assert {NOT_FOUND, OK} <= outcomes["other_owner"] and {NOT_FOUND, OK} <= outcomes["other_consumer"]
    assert owner_in_portal == {OK, LOGIN}  # the owner holds every capability (LOGIN: after log-out)
    assert {NOT_FOUND, OK} <= outcomes["other_key"] and FORBIDDEN in outcomes["test_key"]
    assert UNAUTHENTICATED in outcomes["no_key"] and UNAUTHENTICATED in outcomes["revoked_key"]


def test_merchant_portal_matrix():
    names = sorted(name for name in ROUTES if name.startswith("merchant:"))
    failures = check(names, PORTAL_ACTORS, call_portal)
    assert not failures, "\n".join(failures)


def test_consumer_pages_matrix():
    names = sorted(name for name in ROUTES if name.split(":")[0] in {"me", "shop", "pay", "accounts"})
    failures = check(names, PORTAL_ACTORS, call_portal)
    assert not failures, "\n".join(failures)


def test_api_matrix():
    names = sorted(name for name in ROUTES if name.startswith("api:"))
    failures = check(names, API_ACTORS, call_api)
    assert not failures, "\n".join(failures)
