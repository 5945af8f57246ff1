from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Exceptions: queues, routing, SLA and cases"

    def ready(self):
        from exceptions import resolutions, subscribers  # noqa: F401  (registers resolutions and event subscribers)
        from exceptions.search import find
        from exceptions.selectors import cases_about
        from exceptions.timeline import cases_for_order
        from portal import cases, search, timeline

        timeline.register_source("exceptions", cases_for_order)
        cases.register_source(cases_about)
        search.register_source("exceptions", find)
