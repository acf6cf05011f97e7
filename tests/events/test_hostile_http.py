"""What a hostile or careless client sends, through real HTTP to the server `make run` starts
(granian RSGI) and to gunicorn: every answer is a 4xx in the API's JSON shape (or the
server's own 400 for framing it refuses before the app), never a 500, nothing is stored, and
no traceback reaches the log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from events.models import Event
from events.services import event_type_ensure
from identity.auth import issue_access_token
from identity.services import service_account_create
from tests.support.web import RawResponse, WebServer, http_request

pytestmark = pytest.mark.slow

WEBHOOK_KEY = secrets.token_bytes(32)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()


# The server `make run` starts (granian RSGI) and gunicorn: the answers are the same, except
# for framing each server refuses itself (MALFORMED below).
SERVERS = ["granian", "gunicorn"]


@pytest.fixture(scope="module", params=SERVERS)
def web(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebServer]:
    # One server per module and kind (the database is emptied between tests, not the server).
    server = WebServer(
        tmp_path_factory.mktemp("web"),
        server=request.param,
        WEBHOOK_SECRETS=f"acme={WEBHOOK_SECRET}",
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def token(transactional_db: Any) -> str:
    for name in ("deadline_soon", "new_match"):
        event_type_ensure(name=name)
    account, _ = service_account_create(name="alice", scopes=["events:write", "events:read"])
    return str(issue_access_token(account, ["events:write", "events:read"]))


def event_body(key: str | None = "evt-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_type": "deadline_soon",
        "recipient": {"id": "student-42", "email": "a@example.org", "phone": "+12025550123"},
        "data": {"scholarship": "STEM Futures"},
    }
    if key is not None:
        body["idempotency_key"] = key
    body.update(overrides)
    return body


Post = Callable[..., RawResponse]


@pytest.fixture
def post(web: WebServer, token: str) -> Post:
    """POST /api/v1/events with the bearer token; `body` as bytes, str or a JSON object."""

    def post(body: Any, *, chunked: bool = False, headers: list[tuple[str, str]] = ()) -> Any:
        raw = body if isinstance(body, bytes) else _encode(body)
        all_headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
        all_headers += headers
        request = http_request(
            "POST", "/api/v1/events", body=raw, headers=all_headers, chunked=chunked
        )
        return web.send(request)

    return post


def _encode(body: Any) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body)
    return text.encode("utf-8", "surrogatepass")


def signed_headers(body: bytes, message_id: str = "msg_1") -> dict[str, str]:
    timestamp = str(int(time.time()))
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(WEBHOOK_KEY, signed, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature.decode()}",
    }


def assert_refused(response: RawResponse, status: int, field: str | None = None) -> Any:
    assert response.status == status, response.body
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "request_id"}
    if field is not None:
        assert field in json.dumps(body["detail"]), body
    return body


@pytest.fixture(autouse=True)
def _no_traceback(web: WebServer) -> Iterator[None]:
    logged = len(web.output())
    yield
    tail = web.output()[logged:]
    assert "Traceback" not in tail
    assert '"status": 500' not in tail


def test_it_answers_401_to_a_non_ascii_byte_in_the_webhook_signature(
    web: WebServer, transactional_db: Any
) -> None:
    body = json.dumps(event_body(key=None)).encode()
    for source in ("acme", "nobody"):
        headers = signed_headers(body)
        headers["webhook-signature"] = "v1,\xff"
        response = web.send(
            http_request("POST", f"/api/v1/webhooks/{source}", body=body, headers=headers)
        )
        assert_refused(response, 401)
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        '{"\\udcff": 1, "event_type": "deadline_soon"}',
        '{"event_type": "deadline_soon", "idempotency_key": "k", "data": {"\\ud800x": 1},'
        ' "recipient": {"id": "r", "email": "a@example.org"}}',
        '{"event_type": "deadline_soon", "idempotency_key": "k",'
        ' "recipient": {"id": "r", "email": "a@example.org", "\\udfff": "x"}}',
    ],
    ids=["top-level", "data", "recipient"],
)
def test_it_answers_400_to_a_lone_surrogate_in_an_object_key(post: Post, text: str) -> None:
    body = assert_refused(post(text), 400)
    assert "unpaired surrogate" in json.dumps(body["detail"])
    assert not Event.objects.exists()


def test_it_answers_400_to_a_lone_surrogate_key_in_a_signed_webhook(
    web: WebServer, transactional_db: Any
) -> None:
    body = b'{"event_type": "deadline_soon", "data": {"\\udcff": 1},'
    body += b' "recipient": {"id": "r", "email": "a@example.org"}}'
    response = web.send(
        http_request("POST", "/api/v1/webhooks/acme", body=body, headers=signed_headers(body))
    )
    assert_refused(response, 400)
    assert not Event.objects.exists()


def _digits(zero: int) -> str:
    """+12025550123 written with the digits of another script (`zero`: its digit zero)."""
    return "+" + "".join(chr(zero + int(d)) for d in "12025550123")


@pytest.mark.parametrize(
    "phone",
    [_digits(0x0660), _digits(0xFF10), _digits(0x0966), "+1202555" + _digits(0x0660)[-4:]],
    ids=["arabic-indic", "fullwidth", "devanagari", "mixed"],
)
def test_it_refuses_a_phone_number_that_is_not_ascii_e164(post: Post, phone: str) -> None:
    body = event_body(recipient={"id": "r", "phone": phone})
    assert_refused(post(body), 400, "phone")
    assert not Event.objects.exists()


def test_it_reads_a_chunked_body_to_its_end(post: Post) -> None:
    response = post(event_body(key="chunked-1"), chunked=True)
    assert response.status == 202, response.body
    assert Event.objects.get(uid=response.json()["id"]).idempotency_key == "chunked-1"


def test_it_refuses_a_chunked_body_over_the_limit(post: Post, settings: Any) -> None:
    body = event_body(data={"pad": "x" * settings.MAX_EVENT_BYTES})
    assert_refused(post(body, chunked=True), 413)
    assert not Event.objects.exists()


def test_it_verifies_a_chunked_webhook_over_the_bytes_it_read(
    web: WebServer, transactional_db: Any
) -> None:
    event_type_ensure(name="deadline_soon")
    body = json.dumps(event_body(key=None)).encode()
    request = http_request(
        "POST", "/api/v1/webhooks/acme", body=body, headers=signed_headers(body), chunked=True
    )
    response = web.send(request)
    assert response.status == 202, response.body
    assert Event.objects.get().idempotency_key == "msg_1"


def test_it_refuses_a_repeated_idempotency_key_header(post: Post) -> None:
    # Two Idempotency-Key headers reach the app joined as "k1,k2" (WSGI joins repeats).
    repeated = [("Idempotency-Key", "k1"), ("Idempotency-Key", "k2")]
    assert_refused(post(event_body(key=None), headers=repeated), 400, "idempotency_key")
    assert_refused(post(event_body(key="k1"), headers=repeated), 400, "idempotency_key")
    assert not Event.objects.exists()
    single = post(event_body(key=None), headers=[("Idempotency-Key", "k1")])
    assert single.status == 202, single.body


@pytest.mark.parametrize(
    "text",
    [
        '{"event_type": "deadline_soon", "idempotency_key": "a", "idempotency_key": "b",'
        ' "recipient": {"id": "r", "email": "a@example.org"}}',
        '{"event_type": "deadline_soon", "idempotency_key": "a",'
        ' "recipient": {"id": "r", "email": "a@example.org", "email": "b@example.org"}}',
    ],
    ids=["idempotency_key", "recipient.email"],
)
def test_it_refuses_a_member_named_twice(post: Post, text: str) -> None:
    assert_refused(post(text), 400, "appears twice")
    assert not Event.objects.exists()


def test_it_never_takes_unicode_variants_of_a_key_for_new_events(post: Post) -> None:
    key = "café-№1"
    variants = {unicodedata.normalize(form, key) for form in ("NFC", "NFD", "NFKC", "NFKD")} | {
        "ｃａｆé-1"
    }
    for variant in sorted(variants):
        assert_refused(post(event_body(key=variant)), 400, "idempotency_key")
    for spaced in (" evt-1", "evt-1 ", "evt 1"):
        assert_refused(post(event_body(key=spaced)), 400, "idempotency_key")
    assert not Event.objects.exists()


@pytest.mark.parametrize("path", ["/health", "/health/live", "/canary", "/metrics"])
def test_it_answers_a_post_to_an_ops_view_with_a_json_405(web: WebServer, path: str) -> None:
    response = web.send(
        http_request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
    )
    assert_refused(response, 405)
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "header", ["X-Client-IP", "True-Client-IP", "CF-Connecting-IP", "X-Forwarded-For"]
)
def test_it_never_serves_metrics_to_a_relayed_loopback_request(web: WebServer, header: str) -> None:
    response = web.send(http_request("GET", "/metrics", headers={header: "203.0.113.7"}))
    assert_refused(response, 403)


def test_it_asks_for_the_metrics_token_even_on_loopback_behind_a_proxy(web: WebServer) -> None:
    # The server runs with the default TRUST_PROXY_HEADERS=true: loopback proves nothing.
    assert_refused(web.send(http_request("GET", "/metrics")), 403)


# Framing the server refuses before the application sees the request: gunicorn answers 400
# itself (a short text/html page, which the app cannot shape) and closes the connection;
# granian (hyper) answers 400 with an empty body to the bad lengths and header bytes; it takes
# a 9 KiB header and a 5 KiB URL (its limits are larger) and passes `chunked-and-length` on as
# chunked, without the Content-Length, closing the connection after the answer. What it passes
# on, the app refuses (here the unknown Host: a JSON 400, logged without a traceback). See
# docs/hardening.md.
MALFORMED = {
    "bad-content-length": b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
    "two-content-lengths": (
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 3\r\n\r\n{}"
    ),
    "nul-in-header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "cr-in-header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "oversized-header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: "
    + b"a" * 9000
    + b"\r\n\r\n",
    "oversized-url": b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "chunked-and-length": (
        b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_it_answers_malformed_framing_with_a_4xx_never_a_500(web: WebServer, name: str) -> None:
    response = web.send(MALFORMED[name])
    assert 400 <= response.status < 500, response.body
    # ...and the server goes on serving.
    assert web.send(http_request("GET", "/health/live")).status == 200


def _exchange_to_close(port: int, raw: bytes) -> bytes:
    """Everything the server sends back on one connection until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_it_stores_nothing_and_serves_nothing_more_after_a_body_framed_both_ways(
    web: WebServer, token: str
) -> None:
    """`Content-Length` and `Transfer-Encoding: chunked` together, then a second, valid request
    in the same bytes: read by length, the second request would start inside the chunked
    body (a desync). gunicorn refuses the first with its own 400; granian (hyper) drops the
    length, reads the chunked body (RFC 9112 6.1) and closes the connection after answering.
    Either way one 4xx, and the request behind it is never served."""
    auth = f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    framed_twice = (
        f"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ).encode()
    behind = http_request(
        "POST",
        "/api/v1/events",
        body=json.dumps(event_body("evt-smuggled")).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    answers = _exchange_to_close(web.port, framed_twice + behind)

    statuses = re.findall(rb"^HTTP/1\.1 (\d{3}) ", answers, re.MULTILINE)
    assert len(statuses) == 1, answers
    assert 400 <= int(statuses[0]) < 500, answers
    assert not Event.objects.exists()


def test_it_answers_json_where_the_app_sees_bad_framing(post: Post) -> None:
    # A body shorter than its Content-Length reaches the app cut short: invalid JSON.
    text = json.dumps(event_body())
    body = assert_refused(post(text[: len(text) // 2]), 400)
    assert body["error"] == "malformed_json"
    assert not Event.objects.exists()


@pytest.mark.parametrize("field", ["idempotency_key", "event_type", "ordering_key"])
def test_it_refuses_a_number_where_the_schema_says_string(post: Post, field: str) -> None:
    # Found by the contract run: DRF's CharField took 7 for "7".
    assert_refused(post(event_body(**{field: 7})), 400, field)
    assert not Event.objects.exists()
