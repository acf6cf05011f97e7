"""Every admin page opens: the index, each registered model's list, add form (where adding
is allowed) and the change page of a real row, with demo data loaded."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.support.demo import load_demo_traffic


@pytest.fixture
def staff_client(olivia):
    load_demo_traffic(key="smoke-1")  # messages, attempts and lineage rows to show
    return olivia


def test_every_admin_page_opens(staff_client):
    assert staff_client.get(reverse("admin:index")).status_code == 200
    opened = 0
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        changelist = staff_client.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert changelist.status_code in (200, 302), (info, changelist.status_code)
        request = changelist.wsgi_request
        if model_admin.has_add_permission(request):
            add = staff_client.get(reverse("admin:{}_{}_add".format(*info)))
            assert add.status_code == 200, (info, add.status_code)
        row = model._default_manager.first()
        if row is not None:
            change = staff_client.get(reverse("admin:{}_{}_change".format(*info), args=[row.pk]))
            assert change.status_code in (200, 302), (info, change.status_code)
        opened += 1
    assert opened >= 15
