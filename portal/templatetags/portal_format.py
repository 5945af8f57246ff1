"""Small formatting filters shared by the portal's templates."""

from __future__ import annotations

from django import template

from portal.formatting import duration

register = template.Library()


register.filter("duration", duration)
