"""Who or what changes state: a person, a partner system, a rule, a policy or a named system job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    """The author of a change, recorded on history rows, events and timelines."""

    kind: str  # "user" | "partner" | "rule" | "policy" | "system"
    name: str
    user: Any = None  # the auth user for kind == "user"

    @classmethod
    def for_user(cls, user) -> Actor:
        return cls(kind="user", name=user.get_username(), user=user)

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(kind="system", name=name)

    @classmethod
    def partner(cls, code: str) -> Actor:
        return cls(kind="partner", name=code)

    @classmethod
    def rule(cls, name: str) -> Actor:
        return cls(kind="rule", name=name)

    @classmethod
    def policy(cls, name: str) -> Actor:
        return cls(kind="policy", name=name)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def user_id(self):
        return getattr(self.user, "pk", None)

    def __str__(self) -> str:
        return self.label


def stamp_history(instance, *, actor: Actor, reason: str) -> None:
    """Attach the actor and reason that the next history row of `instance` records."""
    instance._history_user = actor.user
    instance._change_reason = reason[:100] if reason else ""
    instance._history_actor = actor.label
    instance._history_reason_full = reason or ""
