"""The Richpanel-shaped helpdesk provider against a real loopback server: dry run, the
error classes (429 after Retry-After, 5xx transient, 4xx permanent), idempotency keys on
every write, and its health check."""

from __future__ import annotations

from delivery.dispatcher import dispatch_due
from delivery.models import Message
from delivery.providers.registry import provider_for
from tests.delivery.conftest import run_pump, wait_until
from tests.support.conftest import automation_on, live, messages_of, whitelist
from tests.support.helpdesk import Helpdesk

ROUTING = "t_helpdesk_routing"
TIER1 = "t_technical_support_intake"
TECH = {"subject": "The app crashes", "body": "It crashes at start."}


def test_it_records_everything_as_dry_run_and_sends_nothing_with_the_kill_switch(
    helpdesk: Helpdesk, post_ticket
):
    # DISABLE_SEND stays on (the default); every other gate is open.
    automation_on()
    whitelist(TIER1)
    response = post_ticket(ticket_id="T-20", **TECH)

    run_pump()

    messages = messages_of(response.json()["id"])
    assert {key: m.state for key, m in messages.items()} == {ROUTING: "dry_run", TIER1: "dry_run"}
    assert all(m.rendered_hash for m in messages.values())
    assert helpdesk.requests == []


def test_it_retries_a_429_after_its_retry_after(helpdesk: Helpdesk, post_ticket, settings):
    settings.RETRY_BASE_SECONDS = 0.1
    live()
    helpdesk.respond(429, {"Retry-After": "2"})
    response = post_ticket(ticket_id="T-21", **TECH)

    run_pump()

    routing = messages_of(response.json()["id"])[ROUTING]
    assert routing.state == "retrying"
    [attempt] = routing.attempt_set.all()
    assert (attempt.outcome, attempt.response_code) == ("transient_error", "429")

    def sent() -> bool:
        dispatch_due(budget_seconds=0.5)
        return Message.objects.get(pk=routing.pk).state == "sent"

    wait_until(sent, timeout=20, every=0.2)
    first, *later = [r for r in helpdesk.writes if r.path == "/v1/tickets/T-21/add-tags"]
    assert later
    assert later[0].at - first.at >= 2.0
    assert helpdesk.ticket("T-21").tags == ["tech"]
    assert first.headers["Idempotency-Key"] == later[0].headers["Idempotency-Key"]


def routed(event_id: str) -> Message:
    """The ticket's routing message once the pipeline has decided it (a loaded machine may
    need more than one consumer run)."""

    def decided() -> Message | None:
        run_pump()
        message = messages_of(event_id)[ROUTING]
        return message if message.state not in ("pending", "dispatching") else None

    return wait_until(decided, timeout=30, every=0.2)


def test_it_retries_a_5xx(helpdesk: Helpdesk, post_ticket):
    live()
    helpdesk.respond(503)
    response = post_ticket(ticket_id="T-22", **TECH)

    message = routed(response.json()["id"])

    assert (message.state, message.last_error) == (
        "retrying",
        "helpdesk answered 503",
    )
    assert message.attempt_set.get().outcome == "transient_error"


def test_it_dead_letters_a_4xx(helpdesk: Helpdesk, post_ticket):
    live()
    helpdesk.respond(404)
    response = post_ticket(ticket_id="T-23", **TECH)

    message = routed(response.json()["id"])

    assert (message.state, message.last_error) == ("dead", "helpdesk answered 404")
    assert message.attempt_set.get().outcome == "permanent_error"


def test_it_sends_an_idempotency_key_with_every_write(helpdesk: Helpdesk, post_ticket):
    live()
    response = post_ticket(ticket_id="T-24", **TECH)

    run_pump()

    uid = str(messages_of(response.json()["id"])[ROUTING].uid)
    assert [(r.method, r.path, r.body, r.headers["Idempotency-Key"]) for r in helpdesk.writes] == [
        ("PUT", "/v1/tickets/T-24/add-tags", {"tags": ["tech"]}, f"{uid}:tags"),
        ("PUT", "/v1/tickets/T-24", {"ticket": {"team": "Tech Support"}}, f"{uid}:team"),
    ]
    assert {r.headers["Content-Type"] for r in helpdesk.writes} == {"application/json"}


def test_it_checks_health_with_the_api_key(helpdesk: Helpdesk, settings):
    assert provider_for("helpdesk").health().ok is True
    [probe] = helpdesk.requests
    assert (probe.method, probe.headers["x-richpanel-key"]) == ("GET", helpdesk.api_key)

    settings.HELPDESK_API_KEY = "not-the-key"
    health = provider_for("helpdesk").health()
    assert health.ok is False
    assert "401" in health.detail
    assert "not-the-key" not in health.detail


def test_it_refuses_to_send_unconfigured(settings):
    settings.HELPDESK_URL = ""
    provider = provider_for("helpdesk")
    assert provider.is_configured() is False
    assert "HELPDESK_URL" in provider.health().detail
