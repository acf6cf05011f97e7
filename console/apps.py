from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    """The operator console: admin roles, the dashboard (the admin's first page), the
    auditors' export and chain check."""

    name = "console"
    verbose_name = "Operator console"

    def ready(self) -> None:
        from console.roles import roles_sync_after_migrate

        # Permissions exist only once auth's own post_migrate handler has run for every app,
        # so the groups get their rights here, not in the migration that creates them.
        post_migrate.connect(roles_sync_after_migrate, sender=self, dispatch_uid="console.roles")


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the console's site (the dashboard as its index)."""

    default = False
    default_site = "console.sites.ConsoleAdminSite"
