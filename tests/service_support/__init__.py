"""Fixtures and helpers shared by the service tests (tests/api, tests/db, tests/services)."""
