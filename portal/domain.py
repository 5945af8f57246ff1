"""Domain errors and the one helper every service uses to run a state transition."""

from __future__ import annotations

from collections.abc import Sequence

from django_fsm import can_proceed, has_transition_perm  # noqa: F401

from portal.actors import Actor, stamp_history


class DomainError(Exception):
    """A refused business action. Carries a stable code, a message for people and field errors.

    The API maps it to the one error format (409 for conflicts with current state,
    422 for invalid values); the portal shows the message.
    """

    status = 409
    code = "conflict"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = fields or {}


class InvalidInput(DomainError):
    status = 422
    code = "invalid"


def require_reason(reason) -> None:
    """Refuse an empty reason: every change a person or partner asks for says why, for the record."""
    if not reason or not str(reason).strip():
        raise InvalidInput("A reason is required.", fields={"reason": ["Say why, for the record."]})


class TransitionRefused(DomainError):
    code = "transition_refused"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class PermissionRefused(DomainError):
    status = 403
    code = "forbidden"


def transition(instance, name: str, *, actor: Actor, reason: str, update_fields: Sequence[str] | None = None, **kwargs):
    """Run FSM transition `name` on a locked `instance`, save it and stamp history.

    The caller holds the row lock (select_for_update) inside a transaction. A
    transition that is not allowed from the current state, or whose conditions
    fail, raises TransitionRefused and changes nothing.
    """
    method = getattr(instance, name)
    label = getattr(instance._meta, "verbose_name", instance.__class__.__name__)
    if not can_proceed(method):
        state = getattr(instance, "status", "?")
        raise TransitionRefused(
            f"Cannot {name.replace('_', ' ')} {label} {instance}: not allowed while it is {state}.",
            code="transition_refused",
        )
    result = method(**kwargs)
    stamp_history(instance, actor=actor, reason=reason)
    fields = ["status", *(update_fields or [])]
    if hasattr(instance, "updated_at"):
        fields.append("updated_at")
    instance.save(update_fields=sorted(set(fields)))
    return result
