"""Schema-driven fuzzing of the whole OpenAPI document (schemathesis), as an admin, on SQLite and
PostgreSQL: no server error, and every answer is one the document announces (status code, content type,
body shape, headers). Bounded: ``PRODTYPE_FUZZ_EXAMPLES`` examples of valid and of invalid requests per
operation (50 by default, about a minute per database here); derandomized so that CI runs are repeatable.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as sc
from sqlalchemy import select

from prodtype.db.tables import User
from prodtype.serving.security import create_access_token

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PRODTYPE_FUZZ_EXAMPLES", "50"))
CHECKS = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_schema_conformance,
    sc.response_headers_conformance,
    sc.ignored_auth,
]
# Starts a training process per call; its input is checked in tests/loop and tests/api/test_roles.py.
SKIPPED = {("POST", "/api/v1/retrain")}


def admin_headers(app: FastAPI) -> dict[str, str]:
    """A fresh admin token for each call: a fuzzed password change or logout of the admin revokes the
    tokens issued before it."""
    with app.state.sessions() as session:
        version = session.scalar(select(User.token_version).where(User.username == "admin"))
    token = create_access_token("admin", app.state.jwt_secret, timedelta(minutes=10), version or 0)
    return {"Authorization": f"Bearer {token.token}"}


def test_the_fuzzer_finds_no_server_error_and_nothing_undocumented(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: dict[str, str] = {}
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=admin_headers(app), checks=CHECKS)

        fuzzed += 1
        try:
            fuzz()
        except Exception as exc:
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:4000]
    assert fuzzed >= 20, f"only {fuzzed} operations in the document"
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
