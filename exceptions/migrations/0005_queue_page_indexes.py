"""Indexes for the queue pages: each sort of a queue's active cases reads its first page from an index.

Plain SQL (not model indexes): they serve reads only and carry the exact ordering the pages use,
so the model state stays as it is. Partial on the active states, like the page queries.
"""

from django.db import migrations

ACTIVE = "status IN ('open', 'assigned', 'in_progress', 'waiting_external', 'escalated')"

INDEXES = {
    "case_queue_active_due_idx": "(queue_id, resolution_due_at, id)",
    "case_queue_active_urgent_idx": "(queue_id, priority DESC, resolution_due_at, id)",
    "case_queue_active_raised_idx": "(queue_id, created_at, id)",
}


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0004_sla_timer")]

    operations = [
        migrations.RunSQL(
            sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "exceptions_case" {columns} WHERE {ACTIVE}',
            reverse_sql=f'DROP INDEX IF EXISTS "{name}"',
        )
        for name, columns in INDEXES.items()
    ]
