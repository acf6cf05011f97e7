"""A trip sets the flag with source `guard`, opens one incident per trigger (audited, logged
at ERROR, counted), and only an operator's resolve lowers the flag again (audited)."""

from __future__ import annotations

import logging
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from prometheus_client import REGISTRY

from audit.models import AuditRecord
from flags.models import FlagChange, FlagSource
from flags.services import flag_is_on, flag_set, flags_forget_cache
from guard.measurements import measurement_add
from guard.models import Incident, IncidentState
from guard.services import IncidentNotOpen, guard_check, incident_resolve
from guard.triggers import queue_reading

pytestmark = pytest.mark.usefixtures("store")


def _errors(answers: int, errors: int) -> None:
    measurement_add({"answers": answers, "errors": errors})


def _trips(trigger: str) -> float:
    return REGISTRY.get_sample_value("comcenter_guard_trips_total", {"trigger": trigger}) or 0.0


def _live_sending() -> None:
    flag_set(name="DISABLE_SEND", value=False, actor="o", reason="live", source=FlagSource.ADMIN)


def test_it_trips_on_5xx_once_and_sets_the_flag_as_the_guard(caplog) -> None:
    _live_sending()
    _errors(answers=50, errors=1)  # 2 % >= 1 %
    before = _trips("errors_5xx")
    with caplog.at_level(logging.ERROR, logger="guard.services"):
        result = guard_check()
    assert len(result["opened"]) == 1
    incident = Incident.objects.get()
    assert (incident.trigger, incident.flag, incident.state) == (
        "errors_5xx",
        "DISABLE_SEND",
        "open",
    )
    assert incident.measured == pytest.approx(0.02)
    assert incident.samples == 50
    assert not incident.flag_was_on
    change = FlagChange.objects.filter(name="DISABLE_SEND").first()
    assert (change.source, change.new_value, change.actor) == (FlagSource.GUARD, True, "guard")
    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND")
    assert AuditRecord.objects.filter(kind="guard.incident_opened").count() == 1
    assert [r.getMessage() for r in caplog.records] == ["guard tripped"]
    assert _trips("errors_5xx") == before + 1
    _errors(answers=50, errors=10)
    assert guard_check()["opened"] == []  # still open: no second incident
    assert Incident.objects.count() == 1


def test_it_waits_for_the_minimum_number_of_requests() -> None:
    _errors(answers=19, errors=19)
    result = guard_check()
    assert result["opened"] == []
    errors = next(r for r in result["readings"] if r["trigger"] == "errors_5xx")
    assert errors["value"] is None


def test_it_pauses_intake_on_jwt_failures(alice, make_event) -> None:
    measurement_add({"auth_ok": 97, "auth_fail": 3})
    guard_check()
    incident = Incident.objects.get()
    assert incident.trigger == "jwt_failures"
    flags_forget_cache()
    assert alice.post_event(make_event("after-trip")).status_code == 503


def test_it_trips_on_a_slow_p95(settings) -> None:
    _live_sending()
    measurement_add({"ack_n": 100, "ack_le_10": 90, "ack_le_400": 10})
    guard_check()
    incident = Incident.objects.get()
    assert (incident.trigger, incident.measured, incident.threshold) == ("ack_p95", 400, 300)


def test_it_records_an_already_on_flag_and_leaves_it_on_when_resolved() -> None:
    _errors(answers=100, errors=5)  # DISABLE_SEND is on by default (dry run)
    guard_check()
    incident = Incident.objects.get()
    assert incident.flag_was_on
    assert not FlagChange.objects.filter(source=FlagSource.GUARD).exists()
    incident_resolve(incident_id=incident.pk, actor="olivia", reason="checked")
    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND")


def test_it_lowers_the_flag_when_the_operator_resolves() -> None:
    _live_sending()
    _errors(answers=100, errors=5)
    guard_check()
    incident = Incident.objects.get()
    resolved = incident_resolve(incident_id=incident.pk, actor="olivia", reason="provider fixed")
    assert resolved.state == IncidentState.RESOLVED
    assert resolved.resolved_by == "olivia"
    flags_forget_cache()
    assert not flag_is_on("DISABLE_SEND")
    lowered = FlagChange.objects.filter(name="DISABLE_SEND").first()
    assert (lowered.new_value, lowered.actor, lowered.source) == (False, "olivia", "admin")
    audit = AuditRecord.objects.get(kind="guard.incident_resolved")
    assert audit.data["flag_lowered"] is True
    with pytest.raises(IncidentNotOpen):
        incident_resolve(incident_id=incident.pk, actor="olivia", reason="again")


def test_it_keeps_a_flag_another_open_incident_holds() -> None:
    _live_sending()
    measurement_add({"answers": 100, "errors": 5, "ack_n": 100, "ack_le_400": 100})
    guard_check()
    first, second = Incident.objects.order_by("id")
    incident_resolve(incident_id=first.pk, actor="olivia", reason="one of two")
    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND")
    incident_resolve(incident_id=second.pk, actor="olivia", reason="both")
    flags_forget_cache()
    assert not flag_is_on("DISABLE_SEND")


def test_it_reads_the_queue_over_twice_the_baseline_for_the_whole_window(settings) -> None:
    settings.GUARD_INTERVAL_SECONDS = 1
    settings.GUARD_QUEUE_WINDOW_SECONDS = 10
    settings.GUARD_QUEUE_BASELINE_SECONDS = 20
    settings.GUARD_QUEUE_FLOOR = 10
    now = float(int(time.time()))
    for ago in range(30, 10, -1):  # the baseline: 15 deep
        measurement_add({"queue_sum": 15, "queue_n": 1}, at=now - ago)
    for ago in range(4, -1, -1):  # the window's last seconds only: 31 > 2 x 15
        measurement_add({"queue_sum": 31, "queue_n": 1}, at=now - ago)
    reading = queue_reading(now)
    assert reading.threshold == 30
    assert reading.value == 31
    assert not reading.tripped  # over, but not yet for the whole window
    for ago in range(10, 4, -1):
        measurement_add({"queue_sum": 31, "queue_n": 1}, at=now - ago)
    assert queue_reading(now).tripped
    measurement_add({"queue_sum": 30, "queue_n": 1}, at=now - 7)  # one bucket at 30.5
    assert queue_reading(now).tripped
    measurement_add({"queue_sum": 0, "queue_n": 3}, at=now - 7)  # one bucket at 12.2
    assert not queue_reading(now).tripped


def test_it_does_nothing_when_disabled_and_audits_the_switch(settings) -> None:
    _errors(answers=100, errors=50)
    settings.GUARD_ENABLED = False
    assert guard_check() == {"enabled": False, "readings": [], "opened": []}
    assert guard_check()["opened"] == []
    assert not Incident.objects.exists()
    # The first run that sees the value writes it down, once.
    assert AuditRecord.objects.filter(kind="guard.disabled").count() == 1
    settings.GUARD_ENABLED = True
    guard_check()
    guard_check()
    assert AuditRecord.objects.filter(kind="guard.enabled").count() == 1
    settings.GUARD_ENABLED = False
    guard_check()
    assert AuditRecord.objects.filter(kind="guard.disabled").count() == 2


def test_it_resolves_from_the_admin_only_with_the_permission(client) -> None:
    _live_sending()
    _errors(answers=100, errors=5)
    guard_check()
    incident = Incident.objects.get()
    user = get_user_model().objects.create_user("victor", password="pw-victor-1234", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_incident"))
    client.force_login(user)
    url = reverse("admin:guard_incident_changelist")
    form = {"action": "resolve", "_selected_action": [incident.pk]}
    client.post(url, form)
    incident.refresh_from_db()
    assert incident.state == IncidentState.OPEN  # no resolve permission: nothing changed
    user.user_permissions.add(Permission.objects.get(codename="resolve_incident"))
    user = get_user_model().objects.get(pk=user.pk)
    client.force_login(user)
    response = client.post(url, form, follow=True)
    assert response.status_code == 200
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert incident.resolved_by == "victor"
    assert AuditRecord.objects.filter(kind="guard.incident_resolved", actor="victor").exists()


def test_it_shows_open_incidents_on_every_scrape(client, settings) -> None:
    settings.TRUST_PROXY_HEADERS = False  # /metrics answers direct loopback only then
    _errors(answers=100, errors=5)
    guard_check()
    text = client.get("/metrics").content.decode()
    assert 'comcenter_guard_open_incidents{trigger="errors_5xx"} 1.0' in text
    assert 'comcenter_guard_open_incidents{trigger="queue_depth"} 0.0' in text
    assert 'comcenter_guard_trips_total{trigger="errors_5xx"}' in text
