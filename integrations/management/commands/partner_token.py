"""`manage.py partner_token <partner-code>`: issue a new API token for a partner and print it once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integrations.auth import partner_token_issue
from integrations.models import Partner
from portal.actors import Actor, stamp_history


class Command(BaseCommand):
    help = (
        "Create or rotate a partner's bearer token and print it once (only its hash is stored). "
        "Earlier tokens of the partner stop working unless --keep-others is given. With --kind, a "
        "missing partner is created (with --scope, repeatable; default: every scope)."
    )

    def add_arguments(self, parser):
        parser.add_argument("partner_code")
        parser.add_argument("--keep-others", action="store_true", help="Leave the partner's earlier tokens valid")
        parser.add_argument("--kind", choices=Partner.Kind.values, help="Create the partner with this kind if missing")
        parser.add_argument("--name", default="", help="Name of a partner created with --kind")
        parser.add_argument(
            "--scope", action="append", choices=Partner.Scope.values, help="Scope of a partner created with --kind"
        )
        parser.add_argument("--reason", default="Token issued with manage.py partner_token")

    def handle(self, *args, partner_code: str, keep_others: bool, kind: str | None, name: str, scope, reason, **opts):
        actor = Actor.system("partner_token")
        partner = Partner.objects.filter(code=partner_code).first()
        if partner is None:
            if not kind:
                raise CommandError(f"No partner {partner_code!r}. Create it in the admin, or pass --kind to create it.")
            partner = Partner(
                code=partner_code, name=name or partner_code, kind=kind, scopes=scope or list(Partner.Scope.values)
            )
            stamp_history(partner, actor=actor, reason=reason)
            partner.save()
            self.stderr.write(f"Created partner {partner.code} ({partner.get_kind_display()}) with {partner.scopes}")
        token = partner_token_issue(partner=partner, actor=actor, reason=reason, revoke_others=not keep_others)
        self.stderr.write(f"New token for {partner.code} (shown once; store it in the partner system):")
        self.stdout.write(token)
