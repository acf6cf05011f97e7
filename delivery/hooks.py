"""Per-event-type hooks: how another app (support/) shapes the messages of its event types
without the pipeline importing it.

`settings.DELIVERY_EVENT_HOOKS` maps an event type to the dotted path of an `EventHooks`
subclass. Event types without an entry take the defaults below, i.e. the plain behaviour of
routes, gates and rendering. The pipeline calls a hook at three points only: expansion
(which routes of the event become messages, to which address), the gates read right before
each send, and the render context."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from audit.models import AuditRecord
    from delivery.models import Message, Route
    from events.models import Event
    from templates.models import Template


class EventHooks:
    """The defaults; a subclass overrides what its event type needs. Hooks run inside the
    pipeline's transactions and must not call the network."""

    def plan(
        self, *, event: Event, routes: list[Route]
    ) -> tuple[list[tuple[Route, str]], list[AuditRecord]] | None:
        """The (route, address) pairs to create messages for, and lineage rows to write with
        them; None keeps the default (every route whose channel the recipient has an address
        for). A subclass may write its own rows here: it runs in the expansion transaction."""
        return None

    def gate(self, *, message: Message, template: Template) -> tuple[str, str] | None:
        """(state, reason) when this event type's own gate stops the message, checked right
        before the send and before the template gates; None lets it through."""
        return None

    def context(self, *, message: Message) -> dict[str, Any]:
        """Extra render context (plain values only) merged over the event's data."""
        return {}


_DEFAULT = EventHooks()


@functools.cache
def _load(dotted: str) -> EventHooks:
    cls = import_string(dotted)
    if not (isinstance(cls, type) and issubclass(cls, EventHooks)):
        raise ImproperlyConfigured(f"DELIVERY_EVENT_HOOKS: {dotted!r} is not an EventHooks class")
    return cls()


def hooks_for(event_type: str) -> EventHooks:
    dotted = settings.DELIVERY_EVENT_HOOKS.get(event_type)
    return _load(dotted) if dotted else _DEFAULT


@receiver(setting_changed)
def _hooks_reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "DELIVERY_EVENT_HOOKS":
        _load.cache_clear()
