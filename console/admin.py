"""Admin wiring of the console: django-q2's task screens with their resubmit action guarded.

django-q2 registers `resubmit_task` without `permissions=`, so Django offers it to anyone
who may view the task lists; here it asks for the change permission. Successful tasks are
not kept (`save_limit=-1`), so that list loses the action altogether."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_q import admin as q_admin
from django_q.models import Failure, Success


@admin.action(description="Resubmit the selected tasks to the queue", permissions=["change"])
def resubmit_failed(model_admin: Any, request: HttpRequest, queryset: QuerySet[Failure]) -> None:
    q_admin.resubmit_task(model_admin, request, queryset)


class FailureAdmin(q_admin.FailAdmin):
    actions = [resubmit_failed]


class SuccessAdmin(q_admin.TaskAdmin):
    actions = ()


admin.site.unregister(Failure)
admin.site.register(Failure, FailureAdmin)
admin.site.unregister(Success)
admin.site.register(Success, SuccessAdmin)
