"""WCS: work instructions and their cancellations for machines (task id + instruction counter)."""

from __future__ import annotations

from integrations.adapters.base import Adapter


class WcsAdapter(Adapter):
    kind = "wcs"

    def path_for(self, message) -> str:
        return "/instructions/cancel" if message.message_type.endswith("cancel") else "/instructions"
