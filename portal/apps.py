from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from portal import signals  # history actor columns, socket revocation
        from portal.history import cache_history_manager_classes

        cache_history_manager_classes()

        # Every app's post_migrate, not only the portal's: on a fresh database each app's permissions
        # exist only once its own post_migrate created them (the grant is idempotent).
        post_migrate.connect(signals.grant_role_permissions, dispatch_uid="portal.grant_role_permissions")
