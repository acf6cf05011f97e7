"""The OpenAPI schema describes the signed webhook endpoint as it behaves."""

from __future__ import annotations

from typing import Any

from drf_spectacular.generators import SchemaGenerator


def test_it_documents_the_webhook_endpoint_headers_and_errors(db: Any) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/webhooks/{source}"]["post"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert headers[name]["required"] is True
    assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == {"source"}
    assert set(operation["responses"]) == {
        "200",
        "202",
        "400",
        "401",
        "409",
        "413",
        "415",
        "422",
        "429",
        "503",  # intake_paused, or the database is unreachable
    }
    assert operation["security"] == [{"webhookSignature": []}]
    scheme = schema["components"]["securitySchemes"]["webhookSignature"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == (
        "apiKey",
        "header",
        "webhook-signature",
    )
