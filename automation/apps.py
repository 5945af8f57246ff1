from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation: equipment, rules and risk"

    def ready(self):
        from automation import inbound, subscribers  # noqa: F401  (registers event subscribers and WCS handlers)
