from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"

    def ready(self):
        from inventory.search import find
        from inventory.selectors import order_timeline
        from portal import search, timeline

        timeline.register_source("inventory", order_timeline)
        search.register_source("inventory", find)
