"""OpenAPI descriptions drf-spectacular cannot infer: our bearer authentication, and the
strict serializers (unknown members refused, "one of these fields required")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
)


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "events.auth.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "An access token from POST /api/v1/auth/token (client credentials), or a "
                "token of the configured identity provider (RS256/ES256, verified by JWKS)."
            ),
        }


class StrictSerializerSchema(OpenApiSerializerExtension):
    """A StrictSerializer answers 400 to a member it does not know, so its schema says
    `additionalProperties: false`; `any_required` becomes an `anyOf` of required members.
    Without them the schema would call bodies valid that the API refuses, and a client or
    a test generated from it would send them."""

    target_class = "events.serializers.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        any_required = getattr(self.target, "any_required", ())
        if any_required:
            schema["anyOf"] = [{"required": [name]} for name in any_required]
        return schema
