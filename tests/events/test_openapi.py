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


def test_the_docs_page_opens(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


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
