"""Fixtures shared by the integration tests (the partner API's live in api_support)."""

from __future__ import annotations

import threading

import pytest

from integrations.simulator.receiver import SimulatorState, serve


@pytest.fixture
def receiver():
    """A real HTTP partner on a free port: dedupes on Idempotency-Key, checks signatures, injects faults."""
    state = SimulatorState(secrets={"erp": "erp-secret", "wms": "wms-secret"}, seed=7)
    server = serve(state, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.port = server.server_address[1]
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def erp_on_receiver(db, receiver):
    """Factory: an ERP partner whose messages go to the simulated `receiver` (``max_attempts`` and the like given)."""
    from integrations.models import Partner

    def make(**fields) -> Partner:
        return Partner.objects.create(
            code="erp-test",
            name="ERP",
            kind=Partner.Kind.ERP,
            webhook_secret="erp-secret",
            outbound_base_url=f"http://127.0.0.1:{receiver.port}/erp",
            timeout_seconds=2,
            **fields,
        )

    return make
