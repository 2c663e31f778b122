"""A real S3-compatible server for the tests: moto in server mode, on a free local port, once per session.

Each test that asks for ``s3_url`` gets a bucket of its own (``s3://<fresh bucket>/<prefix>``), made on that
server; :func:`s3_settings` gives the Settings fields that point prodtype at it, :func:`s3_env` the same as
``PRODTYPE_*`` environment variables for the processes a test starts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

ACCESS_KEY = "testing-key"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server running in this process (a thread), reachable from subprocesses too."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def client(endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def s3_url(s3_endpoint: str) -> str:
    """``s3://bucket/prefix`` on a bucket made for this test."""
    bucket = f"prodtype-test-{uuid.uuid4().hex[:12]}"
    client(s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/prodtype"


def s3_settings(endpoint: str, url: str) -> dict[str, Any]:
    return {
        "image_store": url,
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SecretStr(SECRET_KEY),
    }


def s3_env(endpoint: str, url: str) -> dict[str, str]:
    return {
        f"PRODTYPE_{name.upper()}": value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for name, value in s3_settings(endpoint, url).items()
    }


def keys(endpoint: str, url: str) -> list[str]:
    """Every key under the URL's bucket (whole keys, prefix included)."""
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    found: list[str] = []
    for page in client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(found)
