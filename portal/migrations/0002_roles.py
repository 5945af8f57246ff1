"""Create one group per role and the system user that named system actors act through."""

from django.db import migrations

ROLE_GROUPS = [
    "Warehouse supervisor",
    "Customer service",
    "Finance",
    "Procurement",
    "Transportation",
    "IT support",
    "Operations admin",
]


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)
    User.objects.get_or_create(
        username="system",
        defaults={"first_name": "System", "is_active": False, "password": "!"},
    )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
