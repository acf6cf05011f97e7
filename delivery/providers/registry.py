"""Which provider serves which channel, chosen by dotted path in `DELIVERY_PROVIDERS`.

Instances are built once per process (they hold health caches) and rebuilt whenever a
delivery-related setting changes, which in practice happens only under tests
(`override_settings`, pytest-django's `settings` fixture)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from delivery.providers.base import Provider

_lock = threading.Lock()
_providers: dict[str, Provider] = {}

# Settings that change what a provider instance would do or report.
_RELEVANT_PREFIXES = (
    "DELIVERY_PROVIDERS",
    "EMAIL_",
    "DEFAULT_FROM_EMAIL",
    "ANYMAIL",
    "SMS_",
    "HELPDESK_",
)


def _build(channel: str, dotted_path: str) -> Provider:
    try:
        cls = import_string(dotted_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"DELIVERY_PROVIDERS[{channel!r}] = {dotted_path!r} cannot be imported"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ImproperlyConfigured(f"DELIVERY_PROVIDERS[{channel!r}] is not a Provider class")
    provider = cls()
    if provider.channel != channel:
        raise ImproperlyConfigured(
            f"DELIVERY_PROVIDERS[{channel!r}] serves channel {provider.channel!r}"
        )
    return provider


def _load() -> dict[str, Provider]:
    # Double-checked so the common path takes no lock.
    if _providers:
        return _providers
    with _lock:
        if not _providers:
            configured: dict[str, str] = settings.DELIVERY_PROVIDERS
            _providers.update({ch: _build(ch, path) for ch, path in configured.items()})
    return _providers


def provider_for(channel: str) -> Provider:
    """The provider of `channel`; ImproperlyConfigured for a channel nobody serves (a
    programming or settings error, not a message failure)."""
    try:
        return _load()[channel]
    except KeyError:
        raise ImproperlyConfigured(f"no delivery provider for channel {channel!r}") from None


def all_providers() -> list[Provider]:
    return list(_load().values())


def providers_reset() -> None:
    """Forget the built instances (and their health caches); the next lookup rebuilds them."""
    with _lock:
        _providers.clear()


@receiver(setting_changed)
def _providers_reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    # Django's own convention for caches derived from settings (see django.test.signals).
    if setting.startswith(_RELEVANT_PREFIXES):
        providers_reset()
