"""The OpenAPI schema describes every endpoint, its inputs and its answers."""

from __future__ import annotations

from django.core.management import call_command


def test_it_generates_a_valid_schema_without_warnings(tmp_path, db):
    out = tmp_path / "schema.json"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.stat().st_size > 0


def test_it_publishes_the_status_codes_each_endpoint_answers(client, db):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    intake = paths["/api/v1/events"]["post"]
    assert set(intake["responses"]) == {
        "200",
        "202",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "422",
        "429",
        "503",  # receive-and-queue cap reached during an identity-provider outage
    }
    assert intake["security"] == [{"bearerAuth": []}]
    assert set(paths["/api/v1/events/{event_id}"]["get"]["responses"]) == {
        "200",
        "401",
        "403",
        "404",
        "429",
    }
    token = paths["/api/v1/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert "security" not in token or token["security"] in ([], [{}])


def test_it_publishes_the_suppressions_api_with_its_inputs_and_answers(client, db):
    schema = client.get("/api/schema/?format=json").json()
    operations = schema["paths"]["/api/v1/suppressions"]

    lookup, create, lift = operations["get"], operations["post"], operations["delete"]
    assert set(operations) == {"get", "post", "delete"}
    assert set(lookup["responses"]) == {"200", "400", "401", "403", "414", "429"}
    assert set(create["responses"]) == {"200", "201", "400", "401", "403", "413", "415", "429"}
    assert set(lift["responses"]) == {"204", "400", "401", "403", "404", "414", "429"}
    for operation in (lookup, create, lift):
        assert operation["security"] == [{"bearerAuth": []}]
    assert {(p["name"], p["required"]) for p in lookup["parameters"]} == {
        ("channel", True),
        ("address", True),
    }
    assert {(p["name"], p["required"]) for p in lift["parameters"]} == {
        ("channel", True),
        ("address", True),
        ("category", True),
        ("reason", True),
    }
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    shape = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert set(shape["required"]) == {"channel", "address", "reason"}
    assert shape["additionalProperties"] is False


def test_the_docs_page_opens(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_it_publishes_the_ops_views_with_their_answers(client, db, settings):
    settings.METRICS_TOKEN = "metrics-" + "x" * 32
    paths = client.get("/api/schema/?format=json").json()["paths"]
    codes = {path: set(paths[path]["get"]["responses"]) for path in paths if "/api/" not in path}
    assert codes == {
        "/health": {"200", "503", "405"},
        "/health/live": {"200", "405"},
        "/canary": {"200", "405"},
        "/metrics": {"200", "401", "403", "405"},
    }
    # What the views answer is what the schema says.
    canary = paths["/canary"]["get"]["responses"]["200"]["content"]["application/json"]
    body = client.get("/canary").json()
    assert set(body) == set(canary["schema"]["required"]) == set(canary["schema"]["properties"])
    health = paths["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    answer = client.get("/health")
    assert str(answer.status_code) in codes["/health"]
    assert set(answer.json()) == set(health["schema"]["required"])
    assert str(client.get("/metrics").status_code) == "401"
    assert client.post("/metrics").status_code == 405
    scheme = client.get("/api/schema/?format=json").json()["components"]["securitySchemes"]
    assert scheme["metricsToken"]["scheme"] == "bearer"


def test_it_publishes_the_sms_feedback_callbacks(client, db):
    paths = client.get("/api/schema/?format=json").json()["paths"]
    for path, ok in (("/api/v1/feedback/sms", "204"), ("/api/v1/feedback/sms/inbound", "200")):
        operation = paths[path]["post"]
        assert set(operation["responses"]) == {ok, "400", "403", "415", "429"}, path
        assert list(operation["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "X-Twilio-Signature" in headers
    form = paths["/api/v1/feedback/sms"]["post"]["requestBody"]["content"]
    schema = form["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[-1]
    components = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert set(components[schema]["required"]) == {"MessageSid", "MessageStatus"}
