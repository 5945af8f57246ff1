from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"

    def ready(self):
        from orchestration.selectors import order_timeline
        from portal.timeline import register_source

        register_source("orchestration", order_timeline)
