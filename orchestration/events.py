"""Names of the events the orchestration app publishes. Payloads carry ids and codes, never model objects."""

ORDER_RECEIVED = "order.received"  # number, external_ref, source, customer
ORDER_VALIDATED = "order.validated"
ORDER_REJECTED = "order.rejected"  # reasons
ORDER_ADDRESS_INVALID = "order.address_invalid"  # missing
ORDER_CREDIT_HOLD = "order.credit_hold"  # reason, exposure, credit_limit, value
ORDER_CREDIT_RELEASED = "order.credit_released"
ORDER_ALLOCATED = "order.allocated"  # outcome (allocated | partially_allocated | backordered), lines[]
ORDER_BACKORDER_FILLED = "order.backorder_filled"  # the cause of a backorder case disappeared
ORDER_RELEASED = "order.released"  # tasks[]
ORDER_HELD = "order.held"
ORDER_UNHELD = "order.unheld"
ORDER_CANCELLED = "order.cancelled"
ORDER_PACKED = "order.packed"
ORDER_SHIPPED = "order.shipped"
ORDER_INVOICED = "order.invoiced"
ORDER_CLOSED = "order.closed"
ORDER_CARRIER_CHANGED = "order.carrier_changed"  # carrier, service_level, cutoff, previous_carrier …
ORDER_CUTOFF_AT_RISK = "order.cutoff_at_risk"  # carrier, cutoff, minutes_left (negative: missed)
# line_no, change (reallocated | cancelled | reduced | substituted | backordered)
ORDER_LINE_CHANGED = "order.line_changed"

TASK_CREATED = "task.created"
TASK_DISPATCHED = "task.dispatched"
TASK_ACKNOWLEDGED = "task.acknowledged"
TASK_STARTED = "task.started"
TASK_COMPLETED = "task.completed"
TASK_SHORT = "task.short_picked"  # order, line_no, sku, location, requested, picked, shortfall, value
TASK_FAILED = "task.failed"
TASK_CANCELLED = "task.cancelled"
TASK_FELL_BACK = "task.fell_back_to_manual"

CUSTOMER_CREDIT_UPDATED = "customer.credit_updated"  # customer, changes {field: [before, after]}

SHIPMENT_PACKED = "shipment.packed"  # ready for the carrier (TMS)
SHIPMENT_SHIPPED = "shipment.shipped"  # shipment confirmation to the ERP, the invoice trigger
SHIPMENT_CONFIRMED = "shipment.confirmed"
