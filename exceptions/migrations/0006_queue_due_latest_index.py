"""The queue pages' "due latest" sort reads its first page from an index too.

Its ordering (due time descending, nulls last) is not the due-soonest index read backwards
(which puts nulls first), so without its own index a page sorted every active case in the queue.
"""

from django.db import migrations

ACTIVE = "status IN ('open', 'assigned', 'in_progress', 'waiting_external', 'escalated')"


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0005_queue_page_indexes")]

    operations = [
        migrations.RunSQL(
            sql='CREATE INDEX IF NOT EXISTS "case_queue_active_due_latest_idx" ON "exceptions_case" '
            f"(queue_id, resolution_due_at DESC NULLS LAST, id DESC) WHERE {ACTIVE}",
            reverse_sql='DROP INDEX IF EXISTS "case_queue_active_due_latest_idx"',
        )
    ]
