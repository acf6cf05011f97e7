"""OpenAPI descriptions of our authentication schemes (drf-spectacular extensions)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "identity.auth.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token from POST /api/v1/auth/token (client credentials), or a "
                "token of the configured identity provider (RS256/ES256, verified by JWKS): "
                "header with a kid the JWKS publishes; claims iss (the configured issuer), "
                "aud (containing the configured audience), exp and sub required, nbf and iat "
                "optional and checked when present; the required role (roles, role, "
                "realm_access.roles, scope or scp: grants events:write and events:read) or our "
                "scopes in scope or scp (events:write, events:read, suppressions:read, "
                "suppressions:write). "
                "While the provider's keys cannot be had, such a token may submit events "
                "(status auth_pending, verified later) but not read them."
            ),
        }


class WebhookSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "identity.webhook_signing.WebhookSignatureAuthentication"
    name = "webhookSignature"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "webhook-signature",
            "description": (
                "Standard Webhooks: space-separated `v1,<base64 HMAC-SHA256>` of "
                "`{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64-decoded "
                "part of the source's secret after `whsec_`; with the webhook-id and "
                "webhook-timestamp headers."
            ),
        }
