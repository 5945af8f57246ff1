"""Pack tasks left open on orders the WMS had already reported packed: they are done.

Before this release a pack reported by the WMS created the shipment but left the order's pack
task waiting, so the floor kept counting it. New packs finish the task themselves
(``orchestration.services._finish_pack_tasks``).
"""

from django.db import migrations
from django.db.models import F
from django.utils import timezone

PACKED_OR_LATER = ["packed", "shipped", "invoiced", "closed"]
OPEN = ["created", "dispatched", "acknowledged", "in_progress"]


def finish(apps, schema_editor):
    Task = apps.get_model("orchestration", "Task")
    now = timezone.now()
    Task.objects.filter(kind="pack", status__in=OPEN, order__status__in=PACKED_OR_LATER).update(
        status="completed", done_quantity=F("quantity"), finished_at=now, ack_deadline=None
    )


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0005_order_external_ref_index")]

    operations = [migrations.RunPython(finish, migrations.RunPython.noop)]
