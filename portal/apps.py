from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from portal import signals  # history actor columns, socket revocation

        post_migrate.connect(signals.grant_role_permissions, sender=self)
