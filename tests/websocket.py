"""Channels' WebsocketCommunicator, importable without daphne.

``channels.testing`` imports its live-server test case, which needs daphne (not a
dependency here). When daphne is missing, a placeholder stands in for that one
module so the real ``WebsocketCommunicator`` can be used; the placeholder refuses use.
"""

from __future__ import annotations

import importlib.util
import sys
import types

if importlib.util.find_spec("daphne") is None and "channels.testing.live" not in sys.modules:
    _live = types.ModuleType("channels.testing.live")

    class ChannelsLiveServerTestCase:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("ChannelsLiveServerTestCase needs daphne, which is not installed")

    _live.ChannelsLiveServerTestCase = ChannelsLiveServerTestCase
    sys.modules["channels.testing.live"] = _live

from channels.testing import WebsocketCommunicator  # noqa: E402

__all__ = ["WebsocketCommunicator"]
