from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ComcenterConfig(AppConfig):
    """The project package as an app: periodic-task wiring and project-wide commands."""

    name = "comcenter"
    verbose_name = "comcenter"

    def ready(self) -> None:
        from comcenter.schedules import sync_schedules_after_migrate

        # Deployment wiring, not domain logic: every `migrate` leaves the periodic tasks of
        # PERIODIC_TASKS registered, so no deployment can forget the sweepers.
        post_migrate.connect(sync_schedules_after_migrate, sender=self)
