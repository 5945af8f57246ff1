from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"

    def ready(self):
        from django.db.models.signals import post_migrate

        from orchestration.selectors import order_timeline
        from portal.signals import grant_role_permissions
        from portal.timeline import register_source

        register_source("orchestration", order_timeline)
        # The portal grants role permissions after its own migrations, before this app's permissions exist on a
        # fresh database; granting again once they do gives operations admin this app's admin (idempotent).
        post_migrate.connect(grant_role_permissions, sender=self)
