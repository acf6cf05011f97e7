"""GET/POST/DELETE /api/v1/suppressions: services look up, add and lift the suppressions of
one address, with their own scopes; bad input is a field-level 400 that changes nothing."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from audit.models import AuditRecord
from delivery.models import Suppression
from delivery.suppressions import suppression_add
from identity.auth import issue_access_token
from identity.throttles import SuppressionThrottle
from tests.conftest import Actor
from tests.events.test_intake_errors import assert_error

URL = "/api/v1/suppressions"


@pytest.fixture
def crm(db: Any) -> Actor:
    """A service that may read and change suppressions (and nothing else)."""
    return Actor("crm", ["suppressions:read", "suppressions:write"])


def post(actor: Actor, body: dict[str, Any] | str) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return actor.client.post(URL, data=raw, content_type="application/json")


def lookup(actor: Actor, **query: str) -> Any:
    return actor.client.get(URL, query)


def lift(actor: Actor, **query: str) -> Any:
    return actor.client.delete(f"{URL}?{urlencode(query)}")


PROMO_OPT_OUT = {
    "channel": "email",
    "address": "Ada@Example.org",
    "category": "promotional",
    "reason": "opt_out",
    "note": "unsubscribed in the app",
}


def test_it_adds_a_suppression_with_201_and_answers_200_when_it_exists(crm: Actor) -> None:
    created = post(crm, PROMO_OPT_OUT)
    again = post(crm, {**PROMO_OPT_OUT, "reason": "complaint"})

    assert created.status_code == 201
    body = created.json()
    row = Suppression.objects.get()
    assert body == {
        "id": row.pk,
        "channel": "email",
        "address": "ada@example.org",
        "category": "promotional",
        "reason": "opt_out",
        "source": f"api:sa:{crm.client_id}",
        "note": "unsubscribed in the app",
        "created_at": body["created_at"],
    }
    assert again.status_code == 200
    assert again.json() == body  # the row as it was: the second reason changed nothing
    [added] = AuditRecord.objects.filter(kind="suppression.added")
    assert added.actor == f"sa:{crm.client_id}"
    assert added.data["address_sha256"] == hashlib.sha256(b"ada@example.org").hexdigest()


def test_it_defaults_the_category_to_all(crm: Actor) -> None:
    response = post(crm, {"channel": "sms", "address": "+12025550123", "reason": "manual"})

    assert response.status_code == 201
    assert response.json()["category"] == "all"


def test_it_looks_up_every_category_of_one_address(crm: Actor) -> None:
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="t")
    post(crm, PROMO_OPT_OUT)
    suppression_add(channel="email", address="other@example.org", reason="bounce", actor="t")

    response = lookup(crm, channel="email", address="ADA@example.org")
    nobody = lookup(crm, channel="email", address="nobody@example.org")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["address"], r["category"], r["reason"]) for r in results] == [
        ("ada@example.org", "all", "bounce"),
        ("ada@example.org", "promotional", "opt_out"),
    ]
    assert nobody.json() == {"results": []}


def test_it_lifts_a_suppression_with_its_reason_in_the_lineage(crm: Actor) -> None:
    post(crm, PROMO_OPT_OUT)
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="t")

    response = lift(
        crm,
        channel="email",
        address="ada@example.org",
        category="promotional",
        reason="re-subscribed on 2026-12-01",
    )
    gone = lift(crm, channel="email", address="ada@example.org", category="promotional", reason="x")

    assert response.status_code == 204
    assert list(Suppression.objects.values_list("category", flat=True)) == ["all"]
    [removed] = AuditRecord.objects.filter(kind="suppression.removed")
    assert removed.actor == f"sa:{crm.client_id}"
    assert removed.data["removal_reason"] == "re-subscribed on 2026-12-01"
    assert (removed.data["channel"], removed.data["category"]) == ("email", "promotional")
    assert "ada@example.org" not in json.dumps(removed.data)
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PROMO_OPT_OUT, "address": "not-an-address"}, "address"),
        ({**PROMO_OPT_OUT, "channel": "sms", "address": "0201234567"}, "address"),
        # Arabic-Indic digits are digits to Python's \d, not to E.164.
        ({**PROMO_OPT_OUT, "channel": "sms", "address": "+١٢٠٢٥٥٥٠١٢٣"}, "address"),
        ({**PROMO_OPT_OUT, "channel": "fax"}, "channel"),
        ({**PROMO_OPT_OUT, "channel": "helpdesk"}, "channel"),
        ({**PROMO_OPT_OUT, "category": "transactional"}, "category"),
        ({**PROMO_OPT_OUT, "reason": "dislike"}, "reason"),
        ({k: v for k, v in PROMO_OPT_OUT.items() if k != "reason"}, "reason"),
        ({**PROMO_OPT_OUT, "adress": "typo@example.org"}, "adress"),
        ({**PROMO_OPT_OUT, "address": 7}, "address"),
        ({**PROMO_OPT_OUT, "note": "x" * 256}, "note"),
    ],
    ids=[
        "bad-email",
        "not-e164",
        "non-ascii-digits",
        "unknown-channel",
        "helpdesk-channel",
        "unknown-category",
        "unknown-reason",
        "no-reason",
        "unknown-field",
        "not-a-string",
        "long-note",
    ],
)
def test_it_refuses_bad_input_field_by_field(crm: Actor, body: dict[str, Any], field: str) -> None:
    response = post(crm, body)

    detail = assert_error(response, 400, "invalid_fields")["detail"]
    assert list(detail) == [field]
    assert not Suppression.objects.exists()
    assert not AuditRecord.objects.filter(kind__startswith="suppression.").exists()


def test_it_never_echoes_the_input_in_an_error(crm: Actor) -> None:
    markup = post(crm, {**PROMO_OPT_OUT, "channel": "<b>fax</b>"})
    surrogate = post(crm, {**PROMO_OPT_OUT, "channel": "\ud800"})

    detail = assert_error(markup, 400, "invalid_fields")["detail"]
    assert detail == {"channel": ["Not one of: email, sms."]}
    assert list(assert_error(surrogate, 400, "invalid_fields")["detail"]) == ["body"]


def test_it_refuses_malformed_and_non_json_bodies(crm: Actor) -> None:
    assert_error(post(crm, '{"channel": '), 400, "malformed_json")
    assert_error(post(crm, "[" * 20000 + "]" * 20000), 400, "malformed_json")
    form = crm.client.post(URL, data=PROMO_OPT_OUT)  # multipart
    assert_error(form, 415, "unsupported_media_type")
    assert not Suppression.objects.exists()


def test_it_refuses_a_lift_without_a_reason_and_keeps_the_suppression(crm: Actor) -> None:
    post(crm, PROMO_OPT_OUT)
    key = {"channel": "email", "address": "ada@example.org", "category": "promotional"}

    missing = lift(crm, **key)
    blank = lift(crm, **key, reason="   ")
    no_category = lift(crm, channel="email", address="ada@example.org", reason="because")

    assert list(assert_error(missing, 400, "invalid_fields")["detail"]) == ["reason"]
    assert list(assert_error(blank, 400, "invalid_fields")["detail"]) == ["reason"]
    assert list(assert_error(no_category, 400, "invalid_fields")["detail"]) == ["category"]
    assert Suppression.objects.count() == 1
    assert not AuditRecord.objects.filter(kind="suppression.removed").exists()


def test_it_refuses_a_lookup_without_an_address(crm: Actor) -> None:
    detail = assert_error(lookup(crm, channel="email"), 400, "invalid_fields")["detail"]
    assert list(detail) == ["address"]
    bad = assert_error(lookup(crm, channel="sms", address="12"), 400, "invalid_fields")
    assert list(bad["detail"]) == ["address"]


def _forged(actor: Actor) -> str:
    header, payload, _ = actor.token.split(".")
    return f"{header}.{payload}.AAAA"


def _other_key(actor: Actor) -> str:
    claims = jwt.decode(actor.token, options={"verify_signature": False})
    return jwt.encode(claims, "another-key-" + "x" * 40, algorithm="HS256")


def _expired(actor: Actor) -> str:
    token = issue_access_token(actor.account, ["suppressions:read", "suppressions:write"])
    token.set_exp(lifetime=-timedelta(seconds=5))
    return str(token)


@pytest.mark.parametrize(
    ("make_token", "code"),
    [(_forged, "invalid_token"), (_other_key, "invalid_token"), (_expired, "expired")],
    ids=["bad-signature", "another-key", "expired"],
)
def test_it_answers_401_to_a_forged_or_expired_token(crm: Actor, make_token: Any, code: str):
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="t")
    crm.client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(crm)}")
    key = {"channel": "email", "address": "ada@example.org"}

    assert_error(lookup(crm, **key), 401, code)
    assert_error(post(crm, PROMO_OPT_OUT), 401, code)
    assert_error(lift(crm, **key, category="all", reason="forged"), 401, code)
    assert Suppression.objects.count() == 1


def test_it_answers_403_without_the_scope_of_the_method(db: Any) -> None:
    suppression_add(channel="email", address="ada@example.org", reason="bounce", actor="t")
    intake = Actor("intake-only", ["events:write", "events:read"])
    reader = Actor("reader", ["suppressions:read"])
    key = {"channel": "email", "address": "ada@example.org"}

    assert_error(lookup(intake, **key), 403, "forbidden")
    assert_error(post(intake, PROMO_OPT_OUT), 403, "forbidden")
    assert_error(post(reader, PROMO_OPT_OUT), 403, "forbidden")
    assert_error(lift(reader, **key, category="all", reason="r"), 403, "forbidden")
    assert lookup(reader, **key).status_code == 200
    assert list(Suppression.objects.values_list("category", flat=True)) == ["all"]


def test_it_throttles_each_caller_with_retry_after(
    crm: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SuppressionThrottle, "rate", "2/min", raising=False)
    other = Actor("crm-2", ["suppressions:read"])
    key = {"channel": "email", "address": "ada@example.org"}

    codes = [lookup(crm, **key).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    throttled = assert_error(lookup(crm, **key), 429, "throttled")
    assert throttled["detail"]
    assert int(lookup(crm, **key)["Retry-After"]) > 0
    assert lookup(other, **key).status_code == 200


def test_it_logs_no_address(crm: Actor, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = {"channel": "email", "address": "ada@example.org"}

    post(crm, PROMO_OPT_OUT)
    post(crm, {**PROMO_OPT_OUT, "address": "not-an-address"})
    lookup(crm, **key)
    lift(crm, **key, category="promotional", reason="r")
    lift(crm, **key, category="promotional", reason="r")  # 404

    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert caplog.records  # the 400 and 404 answers are logged, without the address
    assert "ada@example.org" not in logged.lower()
    assert "ada%40example.org" not in logged.lower()  # the 404's request, query included
    assert "not-an-address" not in logged
