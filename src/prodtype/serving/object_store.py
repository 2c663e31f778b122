"""An S3-compatible object store (AWS S3, MinIO, Ceph, moto...) under one prefix, for what several machines
must share besides the database and the registry: photos, retrain run folders, bulk-job files.

``PRODTYPE_IMAGE_STORE=s3://bucket/prefix`` names it; the endpoint, region and keys come from
``PRODTYPE_S3_ENDPOINT_URL``, ``PRODTYPE_S3_REGION``, ``PRODTYPE_S3_ACCESS_KEY_ID`` and
``PRODTYPE_S3_SECRET_ACCESS_KEY``, each falling back to the standard AWS settings (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role). Under the
prefix: ``images/`` (the content-addressed photos), ``runs/<name>/`` (retrain run folders), ``loop/`` (the
recorded evaluation split) and ``bulk/`` (bulk-job files).

boto3 is imported when a store is first used, never when prodtype is imported. Every failure to reach the
store is an :class:`ObjectStoreError` naming the store, the endpoint and what to check (a 503 in the API).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodtype.config import Settings
from prodtype.serving.errors import ServiceUnavailableError

# What the store's errors mean, from S3's error codes.
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "Forbidden"}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


class ObjectStoreError(ServiceUnavailableError):
    """The object store cannot be reached or used (wrong bucket, credentials or endpoint, or it is down)."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b", no slash at either end

    @classmethod
    def parse(cls, url: str) -> S3Location:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}".rstrip("/")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class ObjectStore:
    """Plain operations on keys under one ``s3://bucket/prefix`` (keys are relative to the prefix)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.location = S3Location.parse(url)
        self.endpoint_url = endpoint_url
        self.region = region
        self._keys = (access_key_id, secret_access_key)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStore | None:
        """The configured store, or None when PRODTYPE_IMAGE_STORE is unset."""
        if not settings.image_store:
            return None
        secret = settings.s3_secret_access_key
        return cls(
            settings.image_store,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )

    def __repr__(self) -> str:
        return f"ObjectStore({self.url()!r}, endpoint_url={self.endpoint_url!r})"

    def url(self, *parts: str) -> str:
        return self.location.url(*parts)

    @property
    def client(self) -> Any:
        with self._client_lock:  # boto3 clients are thread-safe; creating one is not
            if self._client is None:
                import boto3
                from botocore.config import Config

                key_id, secret = self._keys
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret,
                    config=Config(
                        connect_timeout=5,
                        read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"},
                        max_pool_connections=32,
                    ),
                )
            return self._client

    def error(self, exc: Exception, doing: str) -> ObjectStoreError:
        """``exc`` from boto3 as a message a person can act on."""
        code = _code(exc)
        where = f"{self.url()} (endpoint {self.endpoint_url or 'from the AWS settings'})"
        name = type(exc).__name__
        if name == "NoCredentialsError":
            why = (
                "no credentials: set PRODTYPE_S3_ACCESS_KEY_ID and PRODTYPE_S3_SECRET_ACCESS_KEY "
                "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        elif code in _DENIED:
            why = (
                f"access denied ({code}): check the access key and secret (PRODTYPE_S3_ACCESS_KEY_ID, "
                "PRODTYPE_S3_SECRET_ACCESS_KEY or the AWS settings) and the bucket's permissions"
            )
        elif code in ("NoSuchBucket",) or (doing == "check the bucket" and code in _NO_BUCKET):
            why = f"bucket {self.location.bucket!r} does not exist: create it or fix PRODTYPE_IMAGE_STORE"
        elif name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            why = f"cannot connect ({exc}): check PRODTYPE_S3_ENDPOINT_URL and that the store is running"
        else:
            why = f"{name}: {exc}"
        return ObjectStoreError(f"the object store {where} cannot {doing}: {why}")

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.location.bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self.error(exc, doing) from exc

    def check(self) -> None:
        """Raise :class:`ObjectStoreError` unless the bucket exists and the credentials may list it."""
        self._call("check the bucket", "head_bucket")
        self._call("list the bucket", "list_objects_v2", Prefix=self.location.key("") or "", MaxKeys=1)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``: S3 makes a PUT visible whole or not at all."""
        self._call(f"write {key}", "put_object", Key=self.location.key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key(key))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self.error(exc, f"read {key}") from exc
        except BotoCoreError as exc:
            raise self.error(exc, f"read {key}") from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.location.key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self.error(exc, f"look up {key}") from exc
        except BotoCoreError as exc:
            raise self.error(exc, f"look up {key}") from exc
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is not there)."""
        self._call(f"delete {key}", "delete_object", Key=self.location.key(key))

    def list(self, under: str = "") -> Iterator[tuple[str, int]]:
        """(key relative to the prefix, size) of every object under ``under``."""
        base = self.location.key(under)
        prefix = f"{base}/" if base else ""
        strip = len(self.location.key("")) + 1 if self.location.prefix else 0
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(f"list {under or 'the prefix'}", "list_objects_v2", Prefix=prefix, **extra)
            for item in page.get("Contents", []):
                yield str(item["Key"])[strip:], int(item["Size"])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def upload_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.location.bucket, self.location.key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self.error(exc, f"write {key}") from exc

    def download_file(self, key: str, path: Path) -> None:
        """Copy ``key`` to ``path`` (written beside it and renamed: never seen half done)."""
        from botocore.exceptions import BotoCoreError, ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        try:
            self.client.download_file(self.location.bucket, self.location.key(key), str(tmp))
            tmp.replace(path)
        except (BotoCoreError, ClientError) as exc:
            tmp.unlink(missing_ok=True)
            raise self.error(exc, f"read {key}") from exc
