"""Load demo data: one user per role, then each app's demo records (warehouses, stock, orders, …)."""

from __future__ import annotations

import importlib
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from portal.roles import Role

DEMO_USERS = [
    ("supervisor", "Sam", "Supervisor", Role.WAREHOUSE_SUPERVISOR),
    ("service", "Casey", "Service", Role.CUSTOMER_SERVICE),
    ("finance", "Fran", "Finance", Role.FINANCE),
    ("procurement", "Pat", "Procurement", Role.PROCUREMENT),
    ("transport", "Terry", "Transport", Role.TRANSPORTATION),
    ("itsupport", "Ivy", "Support", Role.IT_SUPPORT),
    ("opsadmin", "Olu", "Admin", Role.OPERATIONS_ADMIN),
]
DEMO_APPS = ["inventory", "orchestration", "exceptions", "integrations", "automation"]


class Command(BaseCommand):
    help = "Load demo users (one per role) and demo data; with --if-empty, only into an empty database."

    def add_arguments(self, parser):
        parser.add_argument("--if-empty", action="store_true", help="do nothing when demo users already exist")
        parser.add_argument("--orders", type=int, default=300, help="how many demo orders to create")

    def handle(self, *args, if_empty: bool = False, orders: int = 300, **options):
        password = os.environ.get("DEMO_PASSWORD", "portal-demo")
        User = get_user_model()
        if if_empty and User.objects.filter(username="supervisor").exists():
            from integrations import demo as integrations_demo

            self.stdout.write("Demo data already loaded.")
            integrations_demo.repoint(stdout=self.stdout)
            self.print_logins(password)
            return
        with transaction.atomic():
            for username, first, last, role in DEMO_USERS:
                user, _ = User.objects.get_or_create(
                    username=username, defaults={"first_name": first, "last_name": last}
                )
                user.set_password(password)
                user.is_staff = role == Role.OPERATIONS_ADMIN
                user.save()
                user.groups.add(Group.objects.get(name=role.label))
        for app in DEMO_APPS:
            try:
                module = importlib.import_module(f"{app}.demo")
            except ModuleNotFoundError:
                continue
            self.stdout.write(f"Loading {app} demo data ...")
            module.seed(stdout=self.stdout, orders=orders)
        self.print_logins(password)

    def print_logins(self, password: str) -> None:
        self.stdout.write(f"\nDemo logins (password for all: {password}):")
        for username, _, _, role in DEMO_USERS:
            self.stdout.write(f"  {username:<12} {role.label}")
