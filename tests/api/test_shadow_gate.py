"""The app counts every request it answers on the gate the shadow scorer waits on, so that the shadow
model only uses the CPU while no answer is being computed."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.serving.shadow import QuietGate


def test_every_request_passes_the_shadow_scorers_gate(app: FastAPI, client: TestClient) -> None:
    gate = app.state.shadow.gate
    assert isinstance(gate, QuietGate)
    before = time.monotonic()
    assert client.get("/api/v1/health").status_code == 200
    assert gate.in_flight == 0 and gate.last_end >= before  # it was in flight, and has ended
    before = time.monotonic()
    client.get("/no-such-page")  # answered with an error: still counted, and ended
    assert gate.in_flight == 0 and gate.last_end >= before
