"""Refit the risk models on the portal's own history and report their quality on a held-out slice."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from automation import risk


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class Command(BaseCommand):
    help = (
        "Retrain the order-risk and case-resolution models on recent history; prints precision/recall "
        "on the most recent, held-out slice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--holdout", type=float, default=0.2, help="share of the most recent history held out")
        parser.add_argument("--days", type=int, default=180, help="how far back history is read")
        parser.add_argument("--dry-run", action="store_true", help="measure without activating the new model")

    def handle(self, *args, holdout: float, days: int, dry_run: bool, **options):
        if not 0 < holdout < 1:
            raise CommandError("--holdout must be between 0 and 1.")
        if days < 1:
            raise CommandError("--days must be at least 1.")
        report = risk.train(holdout=holdout, days=days, activate=not dry_run)
        write = self.stdout.write
        write(f"Risk model v{report.version}{' (not activated)' if dry_run else ' (active)'}")
        write(
            f"  orders with finished picking: {report.orders} (train {report.train_orders}, "
            f"held out {report.test_orders}); short-pick base rate {_fmt(report.base_rate)}"
        )
        if report.note:
            write(f"  {report.note}")
        for key, label in (("at_0_5", "threshold 0.5"), ("at_fitted", "fitted threshold")):
            m = report.metrics.get(key)
            if m:
                write(
                    f"  held-out {label} ({m['threshold']}): precision {_fmt(m['precision'])}, "
                    f"recall {_fmt(m['recall'])}, flagged {m['flagged']}"
                )
        if report.metrics:
            write(f"  held-out AUC {_fmt(report.metrics.get('auc'))}, positives {report.metrics.get('test_positives')}")
        if report.weights:
            write("  weights (log-odds per unit of the feature):")
            for name, weight in sorted(report.weights.items(), key=lambda item: -abs(item[1])):
                write(f"    {name:<22} {weight:+.4f}")
        resolution = report.resolution_metrics or {}
        write(
            f"  case resolutions: {resolution.get('cases', 0)} resolved cases, held-out accuracy "
            f"{_fmt(resolution.get('accuracy'))}{' — ' + resolution['note'] if resolution.get('note') else ''}"
        )
