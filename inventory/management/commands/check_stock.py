"""Prove the stock figures: on hand and quarantined equal the ledger, reserved equals the active reservations.

Exit status 0 when every row agrees, 1 when any row is off (with a report of each),
2 when a repair was asked for but refused. Read-only unless ``--repair`` is given.

    manage.py check_stock                       # report, exit 1 on any discrepancy
    manage.py check_stock --json                # the same as JSON (for monitoring)
    manage.py check_stock --repair --reason "INC-123: rows edited by hand" [--yes]

A repair sets drifted rows back to the ledger and the reservations — the sources of
truth — under row locks, re-checking each row first, and records every change as an
event with the figures before and after. It refuses without a reason, asks for
confirmation unless ``--yes``, refuses when more rows are off than ``--max-rows``
(mass drift points at a bug or a restore, which wants an engineer, not a repair), and
leaves alone any row whose true figures would promise more than is on hand.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inventory import selectors, services
from portal.actors import Actor
from portal.domain import DomainError


class Command(BaseCommand):
    help = "Check that stock equals the movement ledger and reserved equals active reservations (exit 1 if not)."

    def add_arguments(self, parser):
        parser.add_argument("--warehouse", help="only rows of this warehouse code")
        parser.add_argument("--json", action="store_true", help="print the discrepancies as JSON")
        parser.add_argument("--repair", action="store_true", help="set drifted rows back to ledger and reservations")
        parser.add_argument("--reason", default="", help="why the repair is made (required with --repair)")
        parser.add_argument("--yes", action="store_true", help="repair without asking for confirmation")
        parser.add_argument("--max-rows", type=int, default=20, help="refuse to repair more rows than this")
        parser.add_argument("--actor", default="check-stock", help="the name the repair is recorded under")

    def handle(
        self, *args, warehouse=None, repair=False, reason="", yes=False, max_rows=20, actor="check-stock", **opts
    ):
        if repair and not reason.strip():
            raise CommandError("--repair needs --reason: say why, for the record (ticket number, what happened).")
        report = selectors.stock_discrepancy_report(warehouse_code=warehouse)
        if opts["json"]:
            self.stdout.write(json.dumps({"discrepancies": report}, default=str, indent=2))
        else:
            self._print_report(report)
        if not report:
            return
        if not repair:
            self.stderr.write(
                f"{len(report)} stock row(s) disagree with the ledger or the reservations. "
                'Nothing was changed. Rerun with --repair --reason "…" to set them back to the ledger.'
            )
            raise SystemExit(1)
        if len(report) > max_rows:
            self.stderr.write(
                f"Refusing to repair {len(report)} rows (more than --max-rows {max_rows}): drift this wide points at a "
                "bug or a restore. Investigate first; raise --max-rows only if you are sure."
            )
            raise SystemExit(2)
        if not yes and not self._confirmed(len(report)):
            self.stderr.write("Repair not confirmed; nothing was changed.")
            raise SystemExit(2)
        try:
            repairs = services.stock_reconcile(
                stock_level_ids=[row["id"] for row in report], actor=Actor.system(actor), reason=reason
            )
        except DomainError as error:
            self.stderr.write(f"Repair refused: {error.message}")
            raise SystemExit(2) from error
        for repair_row in repairs:
            verb = "repaired" if repair_row.repaired else "NOT repaired"
            self.stdout.write(
                f"stock {repair_row.stock_level_id}: {verb} {self._figures(repair_row.before)} → "
                f"{self._figures(repair_row.after)}. {repair_row.note}"
            )
        remaining = selectors.stock_discrepancy_report(warehouse_code=warehouse)
        if remaining:
            self.stderr.write(f"{len(remaining)} row(s) still disagree and need a person (see above).")
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("Every stock row now agrees with the ledger and the reservations."))

    def _print_report(self, report: list[dict]) -> None:
        if not report:
            self.stdout.write(self.style.SUCCESS("OK: every stock row equals its ledger and its active reservations."))
            return
        self.stdout.write(f"{len(report)} stock row(s) off:")
        for row in report:
            lot = f" lot {row['lot']}" if row["lot"] else ""
            self.stdout.write(
                f"  stock {row['id']} {row['warehouse']}/{row['location']} {row['sku']}{lot}: "
                + "; ".join(row["problems"])
            )

    def _confirmed(self, rows: int) -> bool:
        try:
            answer = input(f"Set {rows} row(s) back to the ledger and the active reservations? Type 'repair': ")
        except EOFError:
            return False
        return answer.strip() == "repair"

    @staticmethod
    def _figures(figures: dict) -> str:
        return f"on hand {figures['on_hand']} / reserved {figures['reserved']} / quarantined {figures['quarantined']}"
