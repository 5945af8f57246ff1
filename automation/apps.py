from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation: equipment, rules and risk"

    def ready(self):
        from automation import inbound, subscribers  # noqa: F401  (registers event subscribers and WCS handlers)
        from automation.search import find
        from automation.selectors import order_timeline
        from portal import search, timeline

        timeline.register_source("automation", order_timeline)
        search.register_source("automation", find)
