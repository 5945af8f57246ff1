from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"

    def ready(self):
        from inventory.selectors import order_timeline
        from portal.timeline import register_source

        register_source("inventory", order_timeline)
