"""OpenAPI descriptions drf-spectacular cannot infer from the strict serializers: unknown
members are refused, and "one of these fields is required"."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension


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
