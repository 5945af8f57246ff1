from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"

    def ready(self):
        from orchestration import subscribers  # noqa: F401  (registers the event subscribers)
        from orchestration.search import find
        from orchestration.selectors import order_timeline
        from portal import search, timeline

        timeline.register_source("orchestration", order_timeline)
        search.register_source("orchestration", find)
