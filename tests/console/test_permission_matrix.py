"""The permission matrix of SPEC §15, generated from the admin registry.

Every URL of every registered ModelAdmin (`get_urls()`: list, add, change, delete, history
and custom views) and of the admin site itself is opened as an anonymous visitor, a staff
user in no group, an Operator, an Auditor and an Admin, and every admin action is posted by
each of them. The expectations below are written from the SPEC, not read from the code: a
model, URL or action that has no expectation row fails `test_it_has_a_row_for_every_...`,
so a new admin screen cannot arrive without someone deciding who may use it.

An action is *performed* when the database changed (and, for our own apps, a lineage row
was written); it is *refused* when nothing changed at all."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from audit.models import AuditRecord
from audit.services import audit_seal
from delivery.models import Attempt, Message, MessageState
from delivery.suppressions import suppression_add
from events.models import Event
from flags.services import flag_set, flags_forget_cache
from templates.services import template_create
from tests.support.demo import load_demo_traffic

ANON, STAFF, OPERATOR, AUDITOR, ADMIN = "anonymous", "staff", "Operator", "Auditor", "Admin"
ROLES = (ANON, STAFF, OPERATOR, AUDITOR, ADMIN)
READERS = frozenset({OPERATOR, AUDITOR, ADMIN})
OPS = frozenset({OPERATOR, ADMIN})
ADMIN_ONLY = frozenset({ADMIN})
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rights:
    """Who may use one model's screens: view (the list, a read-only object page and its
    history), add, change (an editable object page) and delete."""

    view: frozenset[str]
    add: frozenset[str] = NOBODY
    change: frozenset[str] = NOBODY
    delete: frozenset[str] = NOBODY
    # URL name suffix -> {role: status} where a screen answers otherwise (a redirect).
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)


def _everyone_staff(status: int) -> dict[str, int]:
    return {role: status for role in ROLES if role != ANON}


def _readers_page() -> dict[str, int]:
    return {role: 200 if role in READERS else 403 for role in ROLES if role != ANON}


MODELS: dict[str, Rights] = {
    "auth.group": Rights(ADMIN_ONLY, ADMIN_ONLY, ADMIN_ONLY, ADMIN_ONLY),
    "auth.user": Rights(
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        ADMIN_ONLY,
        overrides={"password_change": {STAFF: 403, OPERATOR: 403, AUDITOR: 403, ADMIN: 200}},
    ),
    "django_q.schedule": Rights(ADMIN_ONLY, ADMIN_ONLY, ADMIN_ONLY, ADMIN_ONLY),
    "django_q.success": Rights(ADMIN_ONLY, NOBODY, ADMIN_ONLY, ADMIN_ONLY),
    "django_q.failure": Rights(ADMIN_ONLY, NOBODY, ADMIN_ONLY, ADMIN_ONLY),
    "django_q.ormq": Rights(ADMIN_ONLY, NOBODY, ADMIN_ONLY, ADMIN_ONLY),
    "audit.auditrecord": Rights(READERS),
    "audit.auditseal": Rights(READERS),
    # The flag list is a custom page (changes by POST with a reason); the stock edit page
    # only redirects to it.
    "flags.flag": Rights(READERS, change=OPS, overrides={"change": _everyone_staff(302)}),
    "flags.flagchange": Rights(READERS),
    # Switches from the template's page: POST only (see OBJECT_POSTS).
    "templates.template": Rights(
        READERS, add=OPS, change=OPS, overrides={"switch": _everyone_staff(405)}
    ),
    "identity.jwksstate": Rights(READERS),
    "events.event": Rights(READERS),
    "events.eventtype": Rights(READERS, ADMIN_ONLY, ADMIN_ONLY, ADMIN_ONLY),
    # Created by the Admin; its page is read-only (rotate and revoke are actions).
    "identity.serviceaccount": Rights(ADMIN_ONLY, add=ADMIN_ONLY),
    # Incidents are read-only for everyone; resolving is an action. The SLO report reads.
    "guard.incident": Rights(READERS, overrides={"guard_slo_report": _readers_page()}),
    # Support rules are the operator's; trying one on a sample ticket only reads.
    "support.rule": Rights(READERS, OPS, OPS, OPS, overrides={"test": _readers_page()}),
    "support.ticket": Rights(READERS),
    "delivery.route": Rights(READERS, OPS, OPS, OPS),
    "delivery.suppression": Rights(READERS, add=OPS, delete=OPS),
    # The per-row buttons of a message's page are POST only (see OBJECT_POSTS).
    "delivery.message": Rights(READERS, overrides={"requeue": _everyone_staff(405)}),
    "delivery.deadletter": Rights(
        READERS,
        overrides={"requeue": _everyone_staff(405), "discard": _everyone_staff(405)},
    ),
    "delivery.attempt": Rights(READERS),
}

# (model, action) -> the roles that may perform it; everyone else is refused. Django's
# site-wide "delete selected" is on every list and follows each model's delete right.
ACTIONS: dict[tuple[str, str], frozenset[str]] = {
    **{(label, "delete_selected"): rights.delete for label, rights in MODELS.items()},
    ("django_q.failure", "resubmit_failed"): ADMIN_ONLY,
    ("templates.template", "whitelist"): OPS,
    ("templates.template", "unwhitelist"): OPS,
    ("templates.template", "enable"): OPS,
    ("templates.template", "disable"): OPS,
    ("identity.jwksstate", "fetch_now"): ADMIN_ONLY,
    ("guard.incident", "resolve"): OPS,
    ("identity.serviceaccount", "rotate_secret"): ADMIN_ONLY,
    ("identity.serviceaccount", "revoke"): ADMIN_ONLY,
    ("delivery.deadletter", "requeue"): OPS,
    ("delivery.deadletter", "discard"): OPS,
    ("delivery.message", "requeue_blocked"): OPS,
}

# The POST-only views of one object (buttons on its page): (model, URL kind, form data) ->
# the roles that may perform it. Every URL kind that answers a GET with 405 needs a row.
OBJECT_POSTS: dict[tuple[str, str, str], frozenset[str]] = {
    ("templates.template", "switch", "switch=disable&reason=matrix"): OPS,
    ("delivery.deadletter", "requeue", ""): OPS,
    ("delivery.deadletter", "discard", "post=yes"): OPS,
    ("delivery.message", "requeue", ""): OPS,
}

# Rows an action is tried on, where the first row would make it a no-op: a template it
# would switch, a route with no messages yet (routes that have some are protected).
ACTION_ROWS: dict[tuple[str, str], dict[str, Any]] = {
    ("templates.template", "whitelist"): {"whitelisted": False},
    ("templates.template", "unwhitelist"): {"whitelisted": True},
    ("templates.template", "enable"): {"enabled": False},
    ("templates.template", "disable"): {"enabled": True},
    ("delivery.route", "delete_selected"): {"messages": None},
    ("delivery.message", "requeue_blocked"): {"state": MessageState.BLOCKED},
    ("templates.template", "switch"): {"enabled": True},
    ("delivery.message", "requeue"): {"state": MessageState.BLOCKED},
}

# Apps whose changes are Django's or django-q2's own rows (users, groups, the task queue):
# their actions are recorded in the admin's LogEntry, not in our lineage.
NOT_OUR_LINEAGE = frozenset({"auth", "django_q"})


# The admin site's own pages and the console's: name -> {role: status}; anonymous visitors
# are sent to the login page everywhere. POST-only views answer a GET with 405.
def _site(allowed: frozenset[str], refused: int = 403) -> dict[str, int]:
    return {role: 200 if role in allowed else refused for role in ROLES if role != ANON}


EVERY_STAFF = frozenset({STAFF, *READERS})
AUDITORS = frozenset({AUDITOR, ADMIN})
SITE: dict[str, dict[str, int]] = {
    "index": _site(EVERY_STAFF),
    "password_change": _site(EVERY_STAFF),
    "password_change_done": _site(EVERY_STAFF),
    "jsi18n": _site(EVERY_STAFF),
    "autocomplete": _site(NOBODY),  # needs a field to complete; no admin here declares one
    "console_panel": _site(READERS),
    "console_lineage": _site(AUDITORS),
    "console_kill_switch": _site(NOBODY, refused=405),
    "console_verify": _site(NOBODY, refused=405),
}

# The console's POST views, like actions: (name, form data) -> who may.
SITE_POSTS: dict[tuple[str, str], frozenset[str]] = {
    ("console_kill_switch", "value=off&reason=matrix"): OPS,
    ("console_verify", ""): AUDITORS,
}


def _expected(rights: Rights, kind: str, role: str) -> int:
    if role in rights.overrides.get(kind, {}):
        return rights.overrides[kind][role]
    if role == ANON:
        return 302
    allowed = {
        "changelist": rights.view | rights.change,
        "history": rights.view | rights.change,
        "change": rights.view | rights.change,
        "add": rights.add,
        "delete": rights.delete,
    }.get(kind)
    if allowed is None:
        raise AssertionError(f"no expectation for the {kind!r} URL")
    return 200 if role in allowed else 403


def _fingerprint() -> str:
    """A digest of every row of every model an admin screen shows (what an action can
    change) and of the lineage. Request telemetry (sessions, the guard's measurements) is
    not among them: every request writes it."""
    digest = hashlib.sha256()
    # A proxy's rows are its concrete model's (django-q2's Success and Failure are Tasks).
    models = {model._meta.concrete_model for model in admin.site._registry} | {AuditRecord}
    for model in sorted(models, key=lambda m: m._meta.label):
        rows = list(model._default_manager.order_by("pk").values())
        digest.update(f"{model._meta.label}:{json.dumps(rows, default=str)}".encode())
    return digest.hexdigest()


def _clients() -> dict[str, Client]:
    clients = {ANON: Client()}
    for role in ROLES[1:]:
        # No password (hashing one costs a second here): the clients log in by session.
        user = User.objects.create_user(f"{role.lower()}-user", is_staff=True)
        if role != STAFF:
            user.groups.add(Group.objects.get(name=role))
        client = Client()
        client.force_login(user)
        clients[role] = client
    return clients


@pytest.fixture
def world(db: Any, settings: Any) -> dict[str, Client]:
    """One row of every registered model, and a client per role."""
    from django_q.models import OrmQ, Task
    from django_q.signing import SignedPackage

    settings.JWKS_URL = "http://127.0.0.1:9/jwks.json"  # nothing listens: a fetch fails
    load_demo_traffic(key="matrix-1")
    call_command("setup_roles", verbosity=0)
    template_create(key="matrix_off", channel="sms", body="Hi", enabled=False, actor="setup")
    dead = Message.objects.get(channel="sms")
    Message.objects.filter(pk=dead.pk).update(state=MessageState.DEAD, last_error="550")
    # Blocked while its template was disabled; the template is enabled again, so it can be
    # requeued.
    blocked = Message.objects.filter(channel="email").order_by("pk").first()
    Message.objects.filter(pk=blocked.pk).update(
        state=MessageState.BLOCKED, last_error="template disabled"
    )
    Attempt.objects.create(
        message=dead, number=1, lease_token=1, started_at=timezone.now(), outcome="permanent_error"
    )
    flag_set(name="PROMO_SENDS", value=False, actor="setup", reason="matrix", source="admin")
    suppression_add(channel="email", address="opt-out@example.org", reason="opt_out", actor="t")
    from guard.models import Incident
    from identity.models import JwksState
    from support.models import Ticket

    JwksState.objects.create(url=settings.JWKS_URL)
    Incident.objects.create(
        trigger="queue_depth",
        measured=900,
        threshold=500,
        window_seconds=300,
        samples=5,
        flag="DISPATCH_PAUSED",
        flag_was_on=False,
    )
    event = Event.objects.first()
    Ticket.objects.create(
        event=event, caller=event.caller, ticket_id="T-1", channel="email", intent="other"
    )
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex,
            name=f"task-{success}",
            func="math.floor",
            args=(1.5,),
            kwargs={},
            started=now,
            stopped=now,
            success=success,
            attempt_count=1,
        )
    audit_seal()
    if "django_q.ormq" in _registered():
        OrmQ.objects.create(key="comcenter", payload=SignedPackage.dumps({"id": "x", "func": "f"}))
    return _clients()


def _registered() -> dict[str, Any]:
    return {
        model._meta.label_lower: model_admin for model, model_admin in admin.site._registry.items()
    }


def _row(label: str, **filters: Any) -> Any:
    """The first row a superuser sees on the model's list (a proxy's list filters)."""
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    row = _registered()[label].get_queryset(request).filter(**filters).order_by("pk").first()
    assert row is not None, f"the matrix world has no {label} row"
    return row


def _model_urls(label: str, model_admin: Any) -> Iterator[tuple[str, str]]:
    """(kind, url) for each named URL of a ModelAdmin, with a real row's id where needed."""
    row = _row(label)
    prefix = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}_"
    for pattern in model_admin.get_urls():
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        kind = pattern.name.removeprefix(prefix)
        args = [row.pk] if pattern.pattern.converters else []  # an object's page or not
        yield kind, reverse(f"admin:{pattern.name}", args=args)


def test_it_has_a_row_for_every_model_action_and_site_page(world: Any) -> None:
    registered = _registered()
    assert set(registered) <= set(MODELS), f"no expectation for {set(registered) - set(MODELS)}"
    for label, model_admin in registered.items():
        for kind, _url in _model_urls(label, model_admin):
            _expected(MODELS[label], kind, ADMIN)  # raises on a URL kind with no row
        base = {name for _func, name, _desc in model_admin._get_base_actions()}
        rows = {action for (model, action) in ACTIONS if model == label}
        assert base == rows, f"{label}: actions {base ^ rows} lack or have a stale row"
        post_only = {
            kind
            for kind, answers in MODELS[label].overrides.items()
            if set(answers.values()) == {405}
        }
        posts = {kind for (model, kind, _data) in OBJECT_POSTS if model == label}
        assert post_only == posts, f"{label}: POST views {post_only ^ posts} lack a row"
    site = {p.name for p in admin.site.get_urls() if isinstance(p, URLPattern) and p.name}
    site -= {"login", "logout", "view_on_site", "app_list"}  # covered by their own tests below
    assert site == set(SITE), f"site pages without a row: {site ^ set(SITE)}"


@pytest.mark.parametrize("role", ROLES)
def test_it_answers_every_admin_url_as_the_role_may(world: dict[str, Client], role: str) -> None:
    client = world[role]
    wrong = []
    opened = 0
    for label, model_admin in _registered().items():
        for kind, url in _model_urls(label, model_admin):
            expected = _expected(MODELS[label], kind, role)
            status = client.get(url).status_code
            opened += 1
            if status != expected:
                wrong.append(f"{url}: {status}, expected {expected}")
    for name, answers in SITE.items():
        if name == "autocomplete":
            continue
        expected = 302 if role == ANON else answers[role]
        status = client.get(reverse(f"admin:{name}")).status_code
        opened += 1
        if status != expected:
            wrong.append(f"admin:{name}: {status}, expected {expected}")
    assert wrong == [], "\n".join(wrong)
    assert opened >= 90


def _post_action(client: Client, label: str, action: str) -> int:
    url = reverse(f"admin:{label.replace('.', '_')}_changelist")
    # `post=yes` confirms delete_selected at once; the other actions ignore it.
    row = _row(label, **ACTION_ROWS.get((label, action), {}))
    # `reason` answers the questions of the template switches and of lifting a suppression
    # (without one they only show their page again); the other actions ignore it.
    data = {"action": action, "_selected_action": [row.pk], "post": "yes", "reason": "matrix"}
    return client.post(url, data).status_code


@pytest.mark.parametrize("role", ROLES)
def test_it_performs_or_refuses_every_action_as_the_role_may(
    world: dict[str, Client], role: str
) -> None:
    client = world[role]
    wrong = []
    for (label, action), allowed in ACTIONS.items():
        if label not in _registered():
            continue
        with transaction.atomic():
            before = _fingerprint()
            audit_before = AuditRecord.objects.count()
            status = _post_action(client, label, action)
            changed = _fingerprint() != before
            audited = AuditRecord.objects.count() > audit_before
            transaction.set_rollback(True)
        flags_forget_cache()
        if role in allowed:
            if not changed:
                wrong.append(f"{label}.{action}: not performed ({status})")
            elif label.split(".")[0] not in NOT_OUR_LINEAGE and not audited:
                wrong.append(f"{label}.{action}: performed without a lineage row")
        elif changed:
            wrong.append(f"{label}.{action}: performed by {role} ({status})")
        elif role == ANON and status != 302:
            wrong.append(f"{label}.{action}: anonymous got {status}, not the login redirect")
    posts = [
        (reverse(f"admin:{name}"), data, allowed) for (name, data), allowed in SITE_POSTS.items()
    ]
    for (label, kind, data), allowed in OBJECT_POSTS.items():
        row = _row(label, **ACTION_ROWS.get((label, kind), {}))
        posts.append(
            (reverse(f"admin:{label.replace('.', '_')}_{kind}", args=[row.pk]), data, allowed)
        )
    for url, data, allowed in posts:
        with transaction.atomic():
            before = _fingerprint()
            audit_before = AuditRecord.objects.count()
            response = client.post(url, data, content_type="application/x-www-form-urlencoded")
            changed = _fingerprint() != before
            audited = AuditRecord.objects.count() > audit_before
            transaction.set_rollback(True)
        flags_forget_cache()
        if role in allowed and not (changed and audited):
            wrong.append(f"{url}: not performed and audited ({response.status_code})")
        elif role not in allowed and changed:
            wrong.append(f"{url}: performed by {role} ({response.status_code})")
    assert wrong == [], "\n".join(wrong)
