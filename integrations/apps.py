from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations: partners, messages and delivery"

    def ready(self) -> None:
        from integrations import subscribers  # noqa: F401  (partner messages commit with the change)
        from integrations.selectors import timeline_entries
        from portal.timeline import register_source

        register_source("integrations", timeline_entries)
