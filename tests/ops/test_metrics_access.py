"""/metrics: open to direct loopback while no proxy is trusted, a bearer METRICS_TOKEN
otherwise, 403/401 without it."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

REMOTE = "203.0.113.7"


@pytest.mark.usefixtures("no_proxy")
@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_it_serves_loopback(client: Client, address: str) -> None:
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"comcenter_build_info" in response.content


def test_it_refuses_a_remote_address_without_a_configured_token(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR=REMOTE)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


@pytest.mark.usefixtures("no_proxy")
@pytest.mark.parametrize(
    "header",
    [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_REAL_IP",
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_CLIENT_IP",
        "HTTP_TRUE_CLIENT_IP",
        "HTTP_CF_CONNECTING_IP",
    ],
)
def test_it_treats_a_proxied_loopback_request_as_remote(client: Client, header: str) -> None:
    # A reverse proxy on the same host connects from 127.0.0.1 on behalf of anyone.
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", **{header: REMOTE})
    assert response.status_code == 403


def test_it_serves_a_remote_scraper_with_the_token(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    response = client.get(
        "/metrics", REMOTE_ADDR=REMOTE, HTTP_AUTHORIZATION="Bearer scrape-secret-1"
    )
    assert response.status_code == 200
    assert b"comcenter_build_info" in response.content


@pytest.mark.parametrize(
    "authorization", ["", "Bearer wrong-secret", "Basic c2NyYXBlOnNlY3JldA==", "Bearer "]
)
def test_it_answers_401_to_a_remote_scraper_without_the_right_token(
    client: Client, settings, authorization: str
) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", REMOTE_ADDR=REMOTE, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


def test_it_asks_loopback_for_the_token_while_a_proxy_is_trusted(client: Client, settings) -> None:
    # Behind a reverse proxy on this host every request comes from loopback, with only the
    # headers the proxy chose to add: the address proves nothing.
    settings.TRUST_PROXY_HEADERS = True
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    settings.METRICS_TOKEN = "scrape-secret-1"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    authorized = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer scrape-secret-1"
    )
    assert authorized.status_code == 200


@pytest.mark.usefixtures("no_proxy")
def test_it_still_serves_loopback_when_a_token_is_configured(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
