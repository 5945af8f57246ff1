"""The home page's "due next" list reads unanswered cases by their first-response deadline from an index."""

from django.db import migrations

UNANSWERED = (
    "first_responded_at IS NULL AND paused_at IS NULL "
    "AND status IN ('open', 'assigned', 'in_progress', 'waiting_external', 'escalated')"
)


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0006_queue_due_latest_index")]

    operations = [
        migrations.RunSQL(
            sql='CREATE INDEX IF NOT EXISTS "case_queue_unanswered_due_idx" ON "exceptions_case" '
            f"(queue_id, first_response_due_at, id) WHERE {UNANSWERED}",
            reverse_sql='DROP INDEX IF EXISTS "case_queue_unanswered_due_idx"',
        )
    ]
