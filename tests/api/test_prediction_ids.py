"""Prediction ids outside the database's integer range answer 422, never a 500 from an overflow."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from .conftest import API, Headers
from .test_bad_input import assert_error


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("bad_id", ["99999999999999999999999", "2147483648", "0", "-1"])
def test_out_of_range_prediction_id(
    client: TestClient, auth: Callable[[str], Headers], method: str, bad_id: str
) -> None:
    kwargs = {"json": {"prdtypecode": 10}} if method == "PATCH" else {}
    response = client.request(method, f"{API}/predictions/{bad_id}", headers=auth("admin"), **kwargs)
    assert_error(response, 422, "prediction_id")
