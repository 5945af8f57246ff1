"""Partners and their credentials, inbound requests and events, outbound messages."""

from integrations.models.inbound import IdempotencyRecord, InboundEvent, InboundRequest
from integrations.models.outbound import OutboundAction, OutboundAttempt, OutboundMessage
from integrations.models.partners import Partner, PartnerToken

__all__ = [
    "IdempotencyRecord",
    "InboundEvent",
    "InboundRequest",
    "OutboundAction",
    "OutboundAttempt",
    "OutboundMessage",
    "Partner",
    "PartnerToken",
]
