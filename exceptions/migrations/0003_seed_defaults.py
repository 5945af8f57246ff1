"""Seed one queue per role, the SLA policies, the exception types and example routing rules."""

from django.db import migrations


def seed(apps, schema_editor):
    from exceptions.seed import seed_defaults

    seed_defaults(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions", "0002_sla_timer_fields"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
