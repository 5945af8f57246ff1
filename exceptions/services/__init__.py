"""Every change to exception cases: raise (routed, deduplicated, on an SLA clock), work, escalate, resolve.

Each public function is one business action: keyword-only, takes the actor and a reason,
runs in one transaction, and for every transition does the same steps in the same order:
lock the case → ``portal.domain.transition`` → history (actor, reason) → ``QueueChange`` rows
(gapless per queue, live hint on commit) → the ``case.*`` event → ``case.last_seq``.

Rules written down once:

* **Lock order**: the case's cause first (its order, receipt or count — the rows the core's
  services lock before they publish the events that raise cases), then the case row, then
  queue rows (``Queue.last_seq``) in primary-key order. A resolution therefore locks its
  cause before the case, so it never waits on a short pick that is waiting on it.
* **One active case per (type, subject)**: the partial unique constraint decides; a raise
  locks the active case and adds an occurrence, and an insert that loses the race to a
  concurrent raise retries in a savepoint and becomes an occurrence.
* **Permissions live here**, for people (``actor.kind == "user"``): a user acts on cases of
  their roles' queues only (an operations admin may also assign and route), resolves only
  with a resolution that names one of their roles, and never approves what they requested.
  Policies, rules and system jobs are bounded by their own configuration.
* **SLA timers are rows**: due times and the next timers (``at_risk_at``, ``next_escalation_at``
  and their earliest, ``sla_timer_at``, which the beat job reads) are columns, so a restart
  loses nothing; a fired escalation step is a ``CaseEscalation`` row whose unique
  (case, step) pair makes a second firing impossible.
"""

from exceptions.services.cases import (
    case_assign,
    case_auto_resolve,
    case_cancel,
    case_claim,
    case_comment,
    case_escalate,
    case_raise,
    case_resolve,
    case_resume,
    case_route_to,
    case_start,
    case_wait_on_external,
    cases_auto_resolve_for_order,
    cases_bulk_assign,
    cases_bulk_resolve,
)
from exceptions.services.common import MAX_BULK, MAX_COMMENT, SLA_TIMER
from exceptions.services.routing import Route, config_save, routing_match, routing_rule_save
from exceptions.services.sla import cases_check_sla

__all__ = [
    "MAX_BULK",
    "MAX_COMMENT",
    "SLA_TIMER",
    "Route",
    "case_assign",
    "case_auto_resolve",
    "case_cancel",
    "case_claim",
    "case_comment",
    "case_escalate",
    "case_raise",
    "case_resolve",
    "case_resume",
    "case_route_to",
    "case_start",
    "case_wait_on_external",
    "cases_auto_resolve_for_order",
    "cases_bulk_assign",
    "cases_bulk_resolve",
    "cases_check_sla",
    "config_save",
    "routing_match",
    "routing_rule_save",
]
