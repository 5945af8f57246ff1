"""`manage.py prune_message_logs`: delete finished message logs older than the retention period, with progress."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from integrations.services import message_logs_prune
from portal.actors import Actor
from portal.domain import DomainError

LABELS = {
    "inbound_requests": "API requests",
    "inbound_events": "processed partner events",
    "outbound_messages": "delivered or discarded partner messages",
}


class Command(BaseCommand):
    help = (
        "Delete API request logs, processed partner events and delivered or discarded partner messages older "
        "than --days (default: MESSAGE_LOG_RETENTION_DAYS). Waiting, failed and dead-letter rows are kept. "
        "Runs in short batches; --dry-run only counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Keep this many days (at least 1)")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing")

    def handle(self, *args, days: int | None, batch_size: int, dry_run: bool, **options):
        days = settings.MESSAGE_LOG_RETENTION_DAYS if days is None else days
        if days < 1:
            raise CommandError("Keep at least one day (--days 1 or more); MESSAGE_LOG_RETENTION_DAYS=0 means keep all.")
        older_than = timezone.now() - dt.timedelta(days=days)
        self.stdout.write(f"Finished message logs from before {older_than:%Y-%m-%d %H:%M} UTC ({days} days):")

        def progress(kind: str, deleted: int) -> None:
            self.stdout.write(f"  {LABELS[kind]}: {deleted} deleted so far", ending="\r")
            self.stdout.flush()

        try:
            counts = message_logs_prune(
                older_than=older_than,
                actor=Actor.system("prune_message_logs"),
                batch_size=batch_size,
                dry_run=dry_run,
                progress=progress,
            )
        except DomainError as error:
            raise CommandError(error.message) from error
        verb = "would be deleted" if dry_run else "deleted"
        for kind, count in counts.items():
            self.stdout.write(f"  {LABELS[kind]}: {count} {verb}" + " " * 12)
