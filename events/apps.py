from __future__ import annotations

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events"

    def ready(self) -> None:
        from events import schema  # noqa: F401  registers the OpenAPI serializer extension
        from events.pending import pending_verify_wake
        from identity.jwks import keys_recovered

        keys_recovered.connect(pending_verify_wake, dispatch_uid="events.pending_verify_wake")
