"""django-q2's broker list is named for what it holds, so nobody reads it as queue depth."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django_q.models import OrmQ

pytestmark = pytest.mark.skipif(
    not admin.site.is_registered(OrmQ), reason="django-q2 lists its broker only with the ORM broker"
)


def test_it_names_the_broker_list_broker_tasks_on_the_index(olivia):
    page = olivia.get("/admin/").text

    assert "Broker tasks (django-q)" in page
    assert "Queued tasks" not in page


def test_the_broker_list_points_to_the_dashboards_queue_depth(olivia):
    response = olivia.get("/admin/django_q/ormq/")

    assert response.status_code == 200
    assert response.context["title"] == "Broker tasks (django-q)"
    assert 'id="broker-tasks-help"' in response.text
    assert 'href="/admin/#queue-figures"' in response.text
