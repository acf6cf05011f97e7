"""Our key source: rotation without restart, bounded refetches for unknown kids, a
last-known-good copy in the database with a bounded grace, and no request held up by a slow
or dead JWKS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from events.models import Event, EventStatus
from events.pending import pending_verify
from identity.jwks import (
    KeyStatus,
    _Fetch,
    jwks_health,
    jwks_refresh,
    key_source,
    key_source_forget,
)
from identity.models import JwksState
from tests.identity.support import Idp, post_event

MakeEvent = Callable[..., dict[str, Any]]


def wait_until(condition: Callable[[], bool], *, seconds: float = 10.0) -> bool:
    """Poll for an outcome of background work; the bound is generous, not a timing check."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def status_of(response: Any) -> tuple[int, str]:
    body = response.json()
    return response.status_code, body.get("status") or body.get("error")


def test_it_fetches_once_with_a_user_agent_for_many_tokens(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    for n in range(3):
        assert post_event(idp.token(), make_event(f"evt-{n}")).status_code == 202
    assert idp.fetches == 1
    assert idp.stub.requests[0].headers["User-Agent"].startswith("comcenter/")


def test_it_picks_up_a_rotated_key_without_restart(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    keys = idp.keys
    assert status_of(post_event(idp.token(), make_event("evt-1"))) == (202, "accepted")
    idp.publish(keys.rsa_a, keys.rsa_b)
    assert status_of(post_event(idp.token(keys.rsa_b), make_event("evt-2"))) == (202, "accepted")
    assert idp.fetches == 2
    idp.publish(keys.rsa_b)  # the old key is retired
    assert jwks_refresh() is True
    retired = post_event(idp.token(keys.rsa_a), make_event("evt-3"))
    assert status_of(retired) == (401, "unknown_kid")
    assert status_of(post_event(idp.token(keys.rsa_b), make_event("evt-4"))) == (202, "accepted")


def test_it_refetches_at_most_once_per_cooldown_for_unknown_kids(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    settings.JWKS_REFETCH_COOLDOWN = 10.0
    settings.AUTH_PENDING_MAX_PER_ISSUER = 5
    assert post_event(idp.token(), make_event("evt-0")).status_code == 202
    # Inside the cool-down our keys cannot say whether a kid is new: each token is held,
    # none causes a fetch, and the per-issuer cap bounds how many are held.
    for n in range(5):
        forged = idp.token(idp.keys.attacker, headers={"kid": f"random-{n}"})
        assert status_of(post_event(forged, make_event(f"evt-{n + 1}"))) == (202, "auth_pending")
    overflow = idp.token(idp.keys.attacker, headers={"kid": "random-5"})
    assert status_of(post_event(overflow, make_event("evt-6"))) == (503, "auth_pending_full")
    assert idp.fetches == 1
    # The verifier's fetch (keys fetched after their arrival) settles all of them.
    assert pending_verify() == {"released": 0, "rejected": 5, "waiting": 0}
    assert idp.fetches == 2
    reasons = Event.objects.filter(status=EventStatus.REJECTED).values_list(
        "status_reason", flat=True
    )
    assert {reason.split(":")[0] for reason in reasons} == {"unknown_kid"}


def test_it_remembers_unknown_kids_so_they_cannot_force_fetches(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    # No cool-down at all here: only the negative cache stands between a kid and a fetch.
    forged = idp.token(idp.keys.attacker, headers={"kid": "random-1"})
    assert status_of(post_event(forged, make_event("evt-1"))) == (401, "unknown_kid")
    fetched = idp.fetches
    for n in range(3):
        assert status_of(post_event(forged, make_event(f"evt-{n + 2}"))) == (401, "unknown_kid")
    assert idp.fetches == fetched
    another = idp.token(idp.keys.attacker, headers={"kid": "random-2"})
    assert status_of(post_event(another, make_event("evt-9"))) == (401, "unknown_kid")
    assert idp.fetches == fetched + 1


def test_it_accepts_with_cached_keys_while_the_jwks_is_down(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    assert post_event(idp.token(), make_event("evt-1")).status_code == 202
    idp.go_down()
    assert jwks_refresh() is False
    assert status_of(post_event(idp.token(), make_event("evt-2"))) == (202, "accepted")
    ok, detail = jwks_health()
    assert ok is True
    assert "unreachable" in detail
    assert JwksState.objects.get(url=idp.url).last_error


def test_it_keeps_last_known_good_keys_across_a_restart(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    assert post_event(idp.token(), make_event("evt-1")).status_code == 202
    state = JwksState.objects.get(url=idp.url)
    assert state.fetched_at is not None
    assert {k["kid"] for k in state.jwks["keys"]} == {"idp-key-a", "idp-key-ec"}
    key_source_forget()  # a new process
    idp.go_down()
    assert status_of(post_event(idp.token(), make_event("evt-2"))) == (202, "accepted")


def test_it_queues_once_the_stored_keys_are_beyond_the_grace(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    assert post_event(idp.token(), make_event("evt-1")).status_code == 202
    JwksState.objects.filter(url=idp.url).update(fetched_at=timezone.now() - timedelta(hours=25))
    key_source_forget()
    idp.go_down()
    response = post_event(idp.token(), make_event("evt-2"))
    assert status_of(response) == (202, "auth_pending")
    ok, detail = jwks_health()
    assert ok is False
    assert "grace" in detail


def test_it_never_waits_for_a_slow_jwks_on_a_cold_start(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    idp.publish(idp.keys.rsa_a, delay=3.0)  # slower than JWKS_FETCH_TIMEOUT (0.5 s)
    response = post_event(idp.token(), make_event())
    # Answered at the fetch's deadline, not after the 3 s the JWKS takes: the event waits.
    assert status_of(response) == (202, "auth_pending")
    assert idp.fetches == 1
    assert Event.objects.get(uid=response.json()["id"]).outbox_state == "held"


def test_it_answers_from_cached_keys_while_a_refresh_is_slow(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    settings.JWKS_REFETCH_COOLDOWN = 10.0
    keys = idp.keys
    assert post_event(idp.token(), make_event("evt-1")).status_code == 202
    # The keys are 10 minutes old in a fresh process: due for a refresh ahead of expiry.
    JwksState.objects.filter(url=idp.url).update(fetched_at=timezone.now() - timedelta(minutes=10))
    key_source_forget()
    idp.publish(keys.rsa_a, keys.rsa_b, delay=3.0)
    response = post_event(idp.token(), make_event("evt-2"))
    assert status_of(response) == (202, "accepted")
    assert wait_until(lambda: idp.fetches == 2)  # the refresh ahead went out meanwhile
    # A kid only the slow refresh would bring cannot be verified: queued, and no second
    # fetch is started for it.
    response = post_event(idp.token(keys.rsa_b), make_event("evt-3"))
    assert status_of(response) == (202, "auth_pending")
    assert idp.fetches == 2


def test_it_shares_one_fetch_between_concurrent_requests(idp: Idp, transactional_db: Any) -> None:
    # transactional_db: the threads save the fetched keys through their own connections,
    # which a test wrapped in one transaction would lock out.
    idp.publish(idp.keys.rsa_a, delay=0.3)  # slow, but within JWKS_FETCH_TIMEOUT (0.5 s)
    results: list[KeyStatus] = []

    def look_up() -> None:
        try:
            results.append(key_source().lookup("idp-key-a").status)
        finally:
            connection.close()  # this thread's own database connection

    threads = [threading.Thread(target=look_up) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [KeyStatus.FOUND] * 4
    assert idp.fetches == 1


def test_it_reports_health_only_when_keys_are_usable(
    idp: Idp, settings: Any, event_types: Any, make_event: MakeEvent
) -> None:
    idp.go_down()
    ok, detail = jwks_health()
    assert ok is False
    assert "no keys fetched yet" in detail
    idp.publish(idp.keys.rsa_a)
    assert jwks_refresh() is True
    assert jwks_health()[0] is True
    settings.JWKS_URL = ""
    assert jwks_health() == (True, "not configured")


def test_it_ignores_a_jwks_without_usable_keys_and_keeps_the_old_ones(
    idp: Idp, event_types: Any, make_event: MakeEvent
) -> None:
    assert post_event(idp.token(), make_event("evt-1")).status_code == 202
    idp.publish_document({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]})
    assert jwks_refresh() is False
    assert "no usable signing key" in JwksState.objects.get(url=idp.url).last_error
    assert status_of(post_event(idp.token(), make_event("evt-2"))) == (202, "accepted")
    assert Event.objects.filter(status=EventStatus.ACCEPTED).count() == 2


def test_it_abandons_a_fetch_whose_thread_never_reports(idp: Idp, db: Any) -> None:
    source = key_source()
    # The state a forked worker inherits: a fetch "in flight" whose thread it does not have.
    source._inflight = _Fetch(deadline=time.monotonic() - 60)
    assert source.lookup("idp-key-a").status is KeyStatus.FOUND
    assert idp.fetches == 1
