"""The dashboard, the admin's first page: figures now, charts from the minute samples,
refreshing in place, and the kill switch with a reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from console.figures import history, sample_take
from console.models import Sample
from console.sites import CHARTS
from flags.models import FlagChange
from flags.services import flag_is_on, flags_forget_cache

INDEX = "/admin/"
PANEL = "/admin/console/panel/"
KILL = "/admin/console/kill-switch/"


@pytest.fixture
def oscar(member: Any) -> Client:
    return member("Operator", "oscar")


@pytest.fixture
def audrey(member: Any) -> Client:
    return member("Auditor", "audrey")


def _sample(minutes_ago: float, accepted: float, depth: int) -> None:
    Sample.objects.create(
        at=timezone.now() - timedelta(minutes=minutes_ago),
        data={
            "depth": depth,
            "oldest_s": 0,
            "dead": 0,
            "dlq_ratio": 0.0,
            "ack_p95_ms": 7.5,
            "counters": {"comcenter_events": {"accepted": accepted}},
        },
    )


def test_it_shows_the_figures_and_every_chart_on_the_first_page(oscar: Client) -> None:
    for minute, accepted in ((3, 0), (2, 120), (1, 300)):
        _sample(minute, accepted, depth=minute)

    response = oscar.get(INDEX)

    assert response.status_code == 200
    assert response.context["dashboard"].queue["depth"] == 0
    page = response.text
    assert page.count('<svg class="chart"') == len(CHARTS)
    assert 'data-series="accepted"' in page
    for anchor in ('id="kill-switch"', 'id="queue-depth"', 'id="dlq-ratio"', 'id="flags-figures"'):
        assert anchor in page
    assert 'id="incidents"' in page
    assert "<script>" not in page  # the refresh is a static file, allowed by the CSP


def test_it_computes_rates_per_minute_from_the_counter_samples(db: Any) -> None:
    for minute, accepted in ((3, 0), (2, 120), (1, 300)):
        _sample(minute, accepted, depth=10 - minute)

    charts = history(window=timedelta(hours=1), buckets=60)

    [accepted] = charts["events"]
    assert [round(value) for _at, value in accepted.points] == [120, 180]
    [depth] = charts["depth"]
    assert [value for _at, value in depth.points] == [8.0, 9.0]


def test_it_counts_a_restarted_node_s_counters_from_zero(db: Any) -> None:
    for minute, accepted in ((2, 500), (1, 40)):
        _sample(minute, accepted, depth=0)

    [accepted] = history(window=timedelta(hours=1))["events"]

    assert [round(value) for _at, value in accepted.points] == [40]


def test_it_records_a_sample_and_drops_those_older_than_two_days(db: Any) -> None:
    _sample(60 * 49, 0, depth=0)

    sample_id = sample_take()

    assert list(Sample.objects.values_list("pk", flat=True)) == [sample_id]
    data = Sample.objects.get().data
    assert set(data) == {
        "depth",
        "oldest_s",
        "dead",
        "dlq_ratio",
        "delivery_rate",
        "ack_p95_ms",
        "counters",
    }


def test_it_reads_a_bounded_number_of_rows_however_long_the_history(
    oscar: Client, django_assert_max_num_queries: Any
) -> None:
    Sample.objects.bulk_create(
        Sample(at=timezone.now() - timedelta(minutes=m), data={"depth": m}) for m in range(1, 1500)
    )
    with django_assert_max_num_queries(25):
        assert oscar.get(PANEL, {"window": "day"}).status_code == 200


def test_it_refreshes_the_panel_without_the_page(oscar: Client) -> None:
    response = oscar.get(PANEL)

    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'id="dashboard-figures"' in response.text


def test_it_shows_no_figures_to_staff_without_a_role(member: Any) -> None:
    nobody = member(None, "nina")

    assert nobody.get(INDEX).context["dashboard"] is None
    assert nobody.get(PANEL).status_code == 403


def test_it_turns_the_kill_switch_off_and_on_with_a_reason(oscar: Client, settings: Any) -> None:
    settings.FLAG_ENV = {}
    response = oscar.post(KILL, {"value": "off", "reason": "launch"}, follow=True)

    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND") is False
    assert "Kill switch off" in response.text
    assert "DISABLE_SEND on" not in response.text  # the banner is gone

    response = oscar.post(KILL, {"value": "on", "reason": "provider loop"}, follow=True)

    flags_forget_cache()
    assert flag_is_on("DISABLE_SEND") is True
    assert 'id="safety-banners"' in response.text
    change = FlagChange.objects.order_by("-id").first()
    assert (change.actor, change.reason, change.new_value) == ("oscar", "provider loop", True)


def test_it_warns_that_retrying_messages_end_dry_run_before_the_switch(
    oscar: Client, settings: Any
) -> None:
    settings.FLAG_ENV = {}
    oscar.post(KILL, {"value": "off", "reason": "launch"})
    flags_forget_cache()

    page = oscar.get(INDEX).text

    assert "retrying message(s) will end as dry_run" in page
    assert "DISPATCH_PAUSED" in page


def test_it_refuses_a_kill_switch_change_without_a_reason(oscar: Client) -> None:
    before = FlagChange.objects.count()

    response = oscar.post(KILL, {"value": "off", "reason": "  "}, follow=True)

    assert "Kill switch not changed" in response.text
    assert FlagChange.objects.count() == before
    assert oscar.post(KILL, {"value": "maybe", "reason": "x"}).status_code == 302
    assert FlagChange.objects.count() == before
    assert oscar.get(KILL).status_code == 405


def test_it_refuses_the_kill_switch_to_an_auditor(audrey: Client) -> None:
    page = audrey.get(INDEX).text
    assert 'id="kill-switch-button"' not in page
    assert audrey.post(KILL, {"value": "off", "reason": "x"}).status_code == 403
    assert not FlagChange.objects.exists()


def test_it_names_the_environment_in_the_header(oscar: Client, settings: Any) -> None:
    settings.ENVIRONMENT_NAME = "staging-eu"
    page = oscar.get(INDEX).text
    assert '<span class="env-badge" id="environment-name">staging-eu</span>' in page
    assert "console/favicon.svg" in page


def test_it_refuses_a_kill_switch_post_without_the_csrf_token(db: Any) -> None:
    user = User.objects.create_user("oscar", is_staff=True)
    user.groups.add(Group.objects.get(name="Operator"))
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(user)

    assert forged.post(KILL, {"value": "off", "reason": "x"}).status_code == 403
    assert not FlagChange.objects.exists()


def test_it_refreshes_as_often_as_dashboard_refresh_seconds_says(
    oscar: Client, settings: Any
) -> None:
    settings.DASHBOARD_REFRESH_SECONDS = 42

    page = oscar.get("/admin/").text

    assert 'data-refresh-seconds="42"' in page
    assert "refreshes every 42 s." in page
