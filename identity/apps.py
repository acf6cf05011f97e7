from __future__ import annotations

from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity: service accounts and identity-provider keys"

    def ready(self) -> None:
        from identity import schema  # noqa: F401  registers the OpenAPI auth extensions
        from identity.webhook_signing import webhook_secrets

        webhook_secrets()  # a malformed WEBHOOK_SECRETS fails at start-up, naming it
