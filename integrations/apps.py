from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations: partners, messages and delivery"

    def ready(self) -> None:
        # Inbound event handlers and tasks; outbound subscribers write partner messages with the change.
        from integrations import inbound, inbound_tasks, subscribers  # noqa: F401
        from integrations.selectors import timeline_entries
        from portal.timeline import register_source

        register_source("integrations", timeline_entries)
