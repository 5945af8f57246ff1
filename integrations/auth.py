"""Partner credentials: bearer tokens (stored as SHA-256 hashes) and the scopes a partner may use.

A token reads ``pt_<random>``; its first characters are kept in clear as ``prefix`` so a
lookup touches one index entry, and the stored hash is compared in constant time. The
clear token exists only in the output of ``partner_token_issue`` (shown once).
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets

from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from integrations.models import Partner, PartnerToken
from portal.actors import Actor, stamp_history
from portal.domain import require_reason

TOKEN_PREFIX = "pt_"
PREFIX_LENGTH = 12
# Writing last_used_at on every call would add a write per request; once a minute is enough to see usage.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def partner_token_issue(*, partner: Partner, actor: Actor, reason: str, revoke_others: bool = True) -> str:
    """Create a new bearer token for `partner` (revoking its earlier ones) and return it in clear, once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        partner = Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
        now = timezone.now()
        if revoke_others:
            PartnerToken.objects.filter(partner=partner, revoked_at__isnull=True).update(revoked_at=now)
        PartnerToken.objects.create(partner=partner, prefix=token[:PREFIX_LENGTH], token_hash=PartnerToken.hash(token))
        stamp_history(partner, actor=actor, reason=reason)
        partner.save(update_fields=["updated_at"])
    return token


def partner_tokens_revoke(*, partner: Partner, actor: Actor, reason: str) -> int:
    """Revoke every live token of `partner` (a leaked token, a partner cut off); returns how many."""
    require_reason(reason)
    with transaction.atomic():
        partner = Partner.objects.select_for_update(no_key=True).get(pk=partner.pk)
        revoked = PartnerToken.objects.filter(partner=partner, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        stamp_history(partner, actor=actor, reason=reason)
        partner.save(update_fields=["updated_at"])
    return revoked


def partner_for_token(token: str) -> tuple[Partner, PartnerToken] | None:
    """The enabled partner a clear token belongs to, or None (unknown, revoked, or partner disabled)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    wanted = PartnerToken.hash(token)
    candidates = PartnerToken.objects.filter(prefix=token[:PREFIX_LENGTH], revoked_at__isnull=True).select_related(
        "partner"
    )
    for candidate in candidates:
        if hmac.compare_digest(candidate.token_hash, wanted):
            return candidate.partner, candidate
    return None


class PartnerPrincipal:
    """What `request.user` is on the partner API: the calling partner system, never a person."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, partner: Partner):
        self.partner = partner

    def __str__(self) -> str:
        return f"partner:{self.partner.code}"

    def get_username(self) -> str:
        return str(self)

    @property
    def actor(self) -> Actor:
        return Actor.partner(self.partner.code)


class PartnerTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>` → the partner; a missing header leaves the request anonymous (401)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not token.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <token>'.")
        found = partner_for_token(token.strip())
        if found is None:
            raise exceptions.AuthenticationFailed("The token is unknown or revoked.")
        partner, record = found
        if not partner.is_enabled:
            raise exceptions.AuthenticationFailed(f"Partner {partner.code} is disabled.")
        now = timezone.now()
        if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
            PartnerToken.objects.filter(pk=record.pk).update(last_used_at=now)
        return PartnerPrincipal(partner), record

    def authenticate_header(self, request):
        return f'{self.keyword} realm="partner-api"'


def partner_of(request) -> Partner:
    return request.user.partner


class PartnerScope(permissions.BasePermission):
    """Only an authenticated partner holding the view's `required_scope` may call it."""

    message = "This partner may not do that."

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, PartnerPrincipal):
            raise exceptions.NotAuthenticated("A partner bearer token is required.")
        scope = getattr(view, "required_scope", None)
        if scope and not principal.partner.has_scope(scope):
            self.message = f"Partner {principal.partner.code} lacks the scope {str(scope)!r}."
            return False
        return True


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer token in the OpenAPI schema."""

    target_class = "integrations.auth.PartnerTokenAuthentication"
    name = "partnerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A partner token from `manage.py partner_token <partner-code>`.",
        }
