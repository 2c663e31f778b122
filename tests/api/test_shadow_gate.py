"""The served model holds the gate the shadow scorer waits on while it computes an answer, so that the
shadow model only uses the CPU between answers; requests that compute no answer (status polls, pages,
/metrics) do not hold it, so a frequent poller cannot starve the shadow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.serving.shadow import QuietGate


def test_an_answer_holds_the_shadow_gate_and_a_status_poll_does_not(
    app: FastAPI, client: TestClient, predict: Callable[..., dict[str, Any]]
) -> None:
    gate = app.state.shadow_gate
    assert isinstance(gate, QuietGate) and app.state.shadow.gate is gate
    before = time.monotonic()
    predict()
    assert gate.in_flight == 0 and gate.last_end >= before  # the answer held it, and let go
    after_answer = gate.last_end
    for _ in range(5):
        assert client.get("/api/v1/health").status_code == 200
        client.get("/no-such-page")
    assert gate.last_end == after_answer  # polls and errors never held it
