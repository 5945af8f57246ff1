"""Names of the events the automation app publishes. Payloads carry codes and ids, never model objects."""

EQUIPMENT_REGISTERED = "equipment.registered"  # equipment, equipment_kind, warehouse, zone
EQUIPMENT_STATUS_CHANGED = "equipment.status_changed"  # equipment, status, previous, reason
EQUIPMENT_FAULTED = "equipment.faulted"  # equipment, equipment_kind, warehouse, zone, fault, fault_code,
#                                          affected_tasks, affected_orders, fault_id
EQUIPMENT_OFFLINE = "equipment.offline"  # as faulted, fault = "offline"
EQUIPMENT_CLEARED = "equipment.cleared"  # equipment, warehouse, zone, faults_closed, status

HANDOFF_SENT = "handoff.sent"  # task_id, order, equipment, instruction_seq, attempt, ack_deadline
HANDOFF_TIMED_OUT = "handoff.timed_out"  # task_id, equipment, instruction_seq, attempt

RECOMMENDATION_DECIDED = "recommendation.decided"  # recommendation_id, action, status, chosen_action

# The WCS message types the portal sends (integrations delivers them to the WCS partner).
WCS_WORK_INSTRUCTION = "wcs.work_instruction"
WCS_INSTRUCTION_CANCEL = "wcs.instruction_cancel"
