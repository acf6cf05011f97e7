from django.apps import AppConfig, apps
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class ComcenterConfig(AppConfig):
    """The project package as an app: periodic-task wiring and project-wide commands."""

    name = "comcenter"
    verbose_name = "comcenter"

    def ready(self) -> None:
        from comcenter.lib.db import connection_setup
        from comcenter.schedules import sync_schedules_after_migrate

        # Every database connection's session settings, in one visible place.
        connection_created.connect(connection_setup, dispatch_uid="comcenter.db_setup")

        # Deployment wiring, not domain logic: every `migrate` leaves the periodic tasks of
        # PERIODIC_TASKS registered, so no deployment can forget the sweepers. Django sends
        # post_migrate only for apps with a models module, which this package has not: the
        # hook hangs on django_q, whose tables it writes.
        post_migrate.connect(
            sync_schedules_after_migrate,
            sender=apps.get_app_config("django_q"),
            dispatch_uid="comcenter.sync_schedules",
        )
