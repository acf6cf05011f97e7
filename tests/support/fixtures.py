"""Fixtures for the network edge, registered for the whole suite in tests/conftest.py.

Each test gets its own server on a free port, pointed at by Django settings for that test
only (pytest-django's `settings` fixture restores them, and the provider registry rebuilds
its instances on the change)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from tests.support.helpdesk import Helpdesk
from tests.support.http_stub import HttpStub
from tests.support.sms_gateway import SmsGateway
from tests.support.smtp import SmtpServer


@pytest.fixture
def smtp_server(settings: Settings) -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sms_gateway(settings: Settings) -> Iterator[SmsGateway]:
    gateway = SmsGateway().start()
    for name, value in gateway.env().items():
        setattr(settings, name, value)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def http_stub() -> Iterator[HttpStub]:
    stub = HttpStub().start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture
def helpdesk(settings: Settings) -> Iterator[Helpdesk]:
    desk = Helpdesk().start()
    for name, value in desk.env().items():
        setattr(settings, name, value)
    try:
        yield desk
    finally:
        desk.stop()
