from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events and service accounts"

    def ready(self) -> None:
        from events import schema  # noqa: F401  registers the OpenAPI auth extension
        from events.webhook_signing import webhook_secrets

        webhook_secrets()  # a malformed WEBHOOK_SECRETS fails at start-up, naming it
