"""Integration-failure cases for IT support: raised when a message or a partner event fails for good, closed
when it goes through after all (or is discarded).

Both run in the caller's transaction, inside a savepoint, and never let the case machinery fail the delivery
or event bookkeeping that called them: a case that could not be raised is logged, not retried.
"""

from __future__ import annotations

import logging

from django.db import transaction

from portal.actors import Actor

logger = logging.getLogger(__name__)

CASE_TYPE = "integration_failure"


def integration_case_raise(
    *, subject, subject_label: str, summary: str, context: dict, actor: Actor, reason: str, order_number: str
) -> None:
    """Open the integration-failure case about `subject` (a message or a partner event) in IT support's queue."""
    try:
        from exceptions.services import case_raise
    except ImportError:
        logger.warning("no exceptions service; integration failure not raised as a case", extra=_about(subject))
        return
    try:
        with transaction.atomic():
            case_raise(
                type_code=CASE_TYPE,
                subject=subject,
                subject_label=subject_label[:160],
                summary=summary[:300],
                context=context,
                actor=actor,
                reason=reason,
                order_number=order_number,
            )
    except Exception:
        logger.exception("integration failure case not raised", extra=_about(subject))


def integration_case_close(*, subject, actor: Actor, reason: str) -> None:
    """Close the open integration-failure case about `subject`, if there is one: its cause is gone."""
    try:
        from exceptions.services import case_auto_resolve
    except ImportError:
        return
    try:
        with transaction.atomic():
            case_auto_resolve(
                type_code=CASE_TYPE,
                subject_type=subject._meta.label_lower,
                subject_id=str(subject.pk),
                actor=actor,
                reason=reason,
            )
    except Exception:
        logger.exception("integration failure case not closed", extra=_about(subject))


def _about(subject) -> dict:
    return {"subject": f"{subject._meta.label_lower}:{subject.pk}"}
