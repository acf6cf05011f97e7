"""The operations surface in the published OpenAPI schema.

`/health`, `/health/live`, `/canary` and `/metrics` are plain Django views (comcenter/ops.py),
which drf-spectacular does not enumerate; this postprocessing hook adds them, so that
clients, Swagger and the contract run (tests/contract/schemathesis_run.py) see them too."""

from __future__ import annotations

from typing import Any

from comcenter.ops import CANARY_FIELDS

ERROR = {"$ref": "#/components/schemas/Error"}
HEADERS_405 = {"Allow": {"schema": {"type": "string"}, "description": "GET, HEAD"}}

CHECK = {
    "type": "object",
    "description": "One dependency: `ok` counts towards readiness; more fields per check.",
    "properties": {
        "ok": {"type": "boolean"},
        "detail": {"type": "string"},
        "ms": {"type": "number"},
    },
    "required": ["ok", "detail", "ms"],
}
HEALTH = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "fail"]},
        "checks": {"type": "object", "additionalProperties": CHECK},
        "age_seconds": {"type": "number", "minimum": 0},
    },
    "required": ["status", "checks", "age_seconds"],
}
CANARY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "app": {"type": "string"},
        "version": {"type": "string"},
        "build": {"type": "string"},
        "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
        "mode": {"type": "string", "enum": ["dry_run", "receive_and_queue", "live"]},
        "p95_ms": {"type": "number", "nullable": True},
        "security_headers": {
            "type": "object",
            "properties": {
                "present": {"type": "array", "items": {"type": "string"}},
                "missing": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["present", "missing"],
        },
        "dependencies_ok": {"type": "boolean"},
    },
    "required": list(CANARY_FIELDS),
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(operation_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> Any:
    responses = {**responses, "405": {**_json("Not GET or HEAD.", ERROR), "headers": HEADERS_405}}
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["operations"],
            "security": [],
            "responses": responses,
            **extra,
        }
    }


def ops_paths() -> dict[str, Any]:
    return {
        "/health": _get(
            "health",
            "Readiness: every configured dependency answers",
            {
                "200": _json("Every dependency answers.", HEALTH),
                "503": _json("A dependency fails (`status`: fail; see `checks`).", HEALTH),
            },
        ),
        "/health/live": _get(
            "health_live",
            "Liveness: the process serves requests (touches no dependency)",
            {
                "200": _json(
                    "Alive.",
                    {
                        "type": "object",
                        "properties": {"status": {"type": "string", "enum": ["ok"]}},
                        "required": ["status"],
                    },
                )
            },
        ),
        "/canary": _get(
            "canary",
            "The canary: always 200, the verdict is in `status` and `mode`",
            {"200": _json("The eight canary fields.", CANARY)},
        ),
        "/metrics": _get(
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": {
                    **_json("A metrics token is configured and was not given.", ERROR),
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                },
                "403": _json("No metrics token is configured; not direct loopback.", ERROR),
            },
            security=[{"metricsToken": []}, {}],
            description=(
                "Open to direct loopback while no proxy is trusted (TRUST_PROXY_HEADERS off); "
                "otherwise the bearer METRICS_TOKEN is required from every address."
            ),
        ),
    }


def add_ops_paths(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    """drf-spectacular POSTPROCESSING_HOOKS entry: the ops views and the metrics token."""
    result.setdefault("paths", {}).update(ops_paths())
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["metricsToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "METRICS_TOKEN (from the environment), not an API token.",
    }
    tags = result.setdefault("tags", [])
    if not any(tag.get("name") == "operations" for tag in tags):
        tags.append({"name": "operations", "description": "Health, canary and metrics."})
    return result
