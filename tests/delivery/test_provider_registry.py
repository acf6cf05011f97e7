"""The provider registry: dotted paths from settings, one instance per process, rebuilt when
the settings change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings

from delivery.providers.email import EmailProvider
from delivery.providers.registry import all_providers, provider_for
from delivery.providers.sms import TwilioSmsProvider
from support.helpdesk import RichpanelProvider


def test_it_serves_each_channel_from_its_dotted_path() -> None:
    assert isinstance(provider_for("email"), EmailProvider)
    assert isinstance(provider_for("sms"), TwilioSmsProvider)
    assert isinstance(provider_for("helpdesk"), RichpanelProvider)
    assert {p.channel for p in all_providers()} == {"email", "sms", "helpdesk"}


def test_it_returns_the_same_instance_until_settings_change(settings: Settings) -> None:
    first = provider_for("sms")
    assert provider_for("sms") is first

    settings.SMS_TIMEOUT = 3.0

    assert provider_for("sms") is not first


def test_it_refuses_an_unknown_channel() -> None:
    with pytest.raises(ImproperlyConfigured, match="no delivery provider for channel 'fax'"):
        provider_for("fax")


def test_it_refuses_a_class_serving_another_channel(settings: Settings) -> None:
    settings.DELIVERY_PROVIDERS = {"email": "delivery.providers.sms.TwilioSmsProvider"}

    with pytest.raises(ImproperlyConfigured, match="serves channel 'sms'"):
        provider_for("email")


def test_it_refuses_a_path_that_does_not_import(settings: Settings) -> None:
    settings.DELIVERY_PROVIDERS = {"email": "delivery.providers.nowhere.Provider"}

    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        provider_for("email")
