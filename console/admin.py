"""Admin wiring of the console: django-q2's task screens with their resubmit action guarded.

django-q2 registers `resubmit_task` without `permissions=`, so Django offers it to anyone
who may view the task lists; here it asks for the change permission. Successful tasks are
not kept (`save_limit=-1`), so that list loses the action altogether.

django-q2's ORM broker list ("Queued tasks") holds the wake-up tasks handed to the broker,
not the messages waiting to be sent: it is shown as "Broker tasks (django-q)" with a line
pointing to the dashboard's queue depth, so nobody reads it as the delivery queue."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_q import admin as q_admin
from django_q.models import Failure, OrmQ, Success


@admin.action(description="Resubmit the selected tasks to the queue", permissions=["change"])
def resubmit_failed(model_admin: Any, request: HttpRequest, queryset: QuerySet[Failure]) -> None:
    q_admin.resubmit_task(model_admin, request, queryset)


class FailureAdmin(q_admin.FailAdmin):
    actions = [resubmit_failed]


class SuccessAdmin(q_admin.TaskAdmin):
    actions = ()


class BrokerTaskAdmin(q_admin.QueueAdmin):
    list_name = "Broker tasks (django-q)"
    change_list_template = "console/broker_tasks.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        return super().changelist_view(request, {"title": self.list_name, **(extra_context or {})})


admin.site.unregister(Failure)
admin.site.register(Failure, FailureAdmin)
admin.site.unregister(Success)
admin.site.register(Success, SuccessAdmin)
# django-q2 registers its broker list only with the ORM broker (or while testing).
if admin.site.is_registered(OrmQ):
    admin.site.unregister(OrmQ)
    admin.site.register(OrmQ, BrokerTaskAdmin)
