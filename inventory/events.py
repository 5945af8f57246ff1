"""Names of the events the inventory app publishes, with the payload keys each carries."""

RECEIPT_EXPECTED = "inventory.receipt_expected"  # receipt, warehouse, supplier, purchase_order, kind, dock, lines[]
RECEIVING_VARIANCE = "inventory.receiving_variance"  # receipt, line_no, sku, expected, received, variance, value
COUNT_REQUESTED = "inventory.count_requested"  # count_id, sku, warehouse, location, lot, reason
COUNT_VARIANCE = "inventory.count_variance"  # count_id, sku, location, expected, counted, variance, value
STOCK_ADJUSTED = "inventory.stock_adjusted"  # sku, warehouse, location, on_hand_delta, kind
STOCK_RECEIVED = "inventory.stock_received"  # sku, warehouse, location, quantity
STOCK_RECONCILED = "inventory.stock_reconciled"  # stock_level_id, before{}, after{} (manage.py check_stock --repair)
