"""MLflow: log training runs, register model versions, keep the ``champion``/``challenger`` aliases.

Embedded by default: a SQLite store ``<storage>/mlflow/mlflow.db`` and an artifact folder
``<storage>/mlflow/artifacts``; ``PRODTYPE_MLFLOW_TRACKING_URI`` names a tracking server instead.
mlflow is imported only when a registry is first used (it takes seconds), never when prodtype is imported.

The champion's history is kept as a JSON tag on the registered model (``champion_history``: every promotion
and rollback, with who, when and why), so that ``rollback`` goes back to the champion before the current one
and nothing is ever forgotten. Changes of aliases and tags are made under a file lock in embedded mode, so a
promotion from the API and one from a retrain never interleave.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from prodtype.config import Settings
from prodtype.files import locked

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
EXPERIMENT = "prodtype"
BUNDLE_ARTIFACT = "bundle"
MAX_HISTORY = 100


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (already the champion, nothing to roll back to...)."""


class UnknownVersionError(RegistryError, LookupError):
    """No such version of the registered model."""


@dataclass(frozen=True)
class ModelVersionInfo:
    version: int
    run_id: str | None
    source: str
    created_at: datetime
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def is_champion(self) -> bool:
        return CHAMPION in self.aliases

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _local_path(uri: str) -> Path | None:
    """The folder an artifact URI points to when it is on this machine's disk, else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    return None


class Registry:
    """The registered model ``name`` in one MLflow tracking + registry store."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        model_name: str = "prodtype",
        artifact_root: Path | None = None,
        cache_dir: Path | None = None,
        lock_path: Path | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.artifact_root = artifact_root
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "prodtype-registry-cache"
        self.lock_path = lock_path
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        loop = settings.loop
        root = settings.mlflow_dir
        embedded = loop.embedded()
        return cls(
            loop.tracking_uri(settings),
            model_name=loop.registered_model_name,
            artifact_root=(root / "artifacts").resolve() if embedded else None,
            cache_dir=(root / "downloads").resolve(),
            lock_path=(root / ".registry.lock").resolve() if embedded else None,
        )

    def __repr__(self) -> str:
        return f"Registry({self.tracking_uri!r}, model_name={self.model_name!r})"

    # -- plumbing ------------------------------------------------------------------------------------

    def store_exists(self) -> bool:
        """False for an embedded store that was never written (so nothing is registered)."""
        if self.tracking_uri.startswith("sqlite:///"):
            return Path(self.tracking_uri.removeprefix("sqlite:///")).is_file()
        return True

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:  # pragma: no cover - mlflow-skinny is a dependency
                raise RegistryError(
                    "MLflow is not installed: pip install mlflow-skinny (see constraints.txt)"
                ) from exc
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self.lock_path is None:
            yield
            return
        with locked(self.lock_path):
            yield

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return str(exp.experiment_id)
        location = self.artifact_root.as_uri() if self.artifact_root is not None else None
        if self.artifact_root is not None:
            self.artifact_root.mkdir(parents=True, exist_ok=True)
        return str(self.client.create_experiment(EXPERIMENT, artifact_location=location))

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.model_name, description="prodtype product type classifier (model bundles)"
                )
            except MlflowException:
                self.client.get_registered_model(self.model_name)  # created meanwhile by another process

    # -- logging and registering ----------------------------------------------------------------------

    def log_and_register(
        self,
        bundle_dir: Path,
        *,
        run_name: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifacts: dict[str, Path] | None = None,
        version_tags: dict[str, str] | None = None,
    ) -> ModelVersionInfo:
        """One MLflow run (params, metrics, tags, artifacts, the bundle) and a new version of the model.

        The version is created last: a run that dies before that leaves a failed run and no version.
        """
        client = self.client
        run = client.create_run(self._experiment_id(), run_name=run_name, tags=tags)
        run_id = run.info.run_id
        try:
            from mlflow.entities import Metric, Param

            now_ms = int(datetime.now(UTC).timestamp() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            )
            for name, path in (artifacts or {}).items():
                if Path(path).is_dir():
                    client.log_artifacts(run_id, str(path), name)
                elif Path(path).is_file():
                    client.log_artifact(run_id, str(path), name)
            client.log_artifacts(run_id, str(bundle_dir), BUNDLE_ARTIFACT)
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        with self._locked():
            self._ensure_registered_model()
            source = f"{client.get_run(run_id).info.artifact_uri}/{BUNDLE_ARTIFACT}"
            mv = client.create_model_version(
                self.model_name, source=source, run_id=run_id, tags=version_tags or {}
            )
        log.info("registered %s version %s (run %s)", self.model_name, mv.version, run_id)
        return self.get(int(mv.version))

    # -- reading --------------------------------------------------------------------------------------

    def _info(self, mv: Any, with_metrics: bool = True) -> ModelVersionInfo:
        metrics: dict[str, float] = {}
        if with_metrics and mv.run_id:
            try:
                metrics = dict(self.client.get_run(mv.run_id).data.metrics)
            except Exception:  # a run deleted from tracking: the version still stands
                metrics = {}
        return ModelVersionInfo(
            version=int(mv.version),
            run_id=mv.run_id or None,
            source=str(mv.source),
            created_at=datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, tz=UTC),
            aliases=sorted(getattr(mv, "aliases", []) or []),
            tags=dict(mv.tags or {}),
            metrics=metrics,
        )

    def has_model(self) -> bool:
        if not self.store_exists():
            return False
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            return False
        return True

    def versions(self) -> list[ModelVersionInfo]:
        """All versions, newest first."""
        if not self.has_model():
            return []
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        # search results may omit aliases on some stores: take them from the registered model.
        by_alias = self._aliases()
        infos = []
        for mv in found:
            info = self._info(mv)
            aliases = sorted(a for a, v in by_alias.items() if v == info.version)
            infos.append(
                ModelVersionInfo(
                    info.version, info.run_id, info.source, info.created_at, aliases, info.tags, info.metrics
                )
            )
        return sorted(infos, key=lambda i: i.version, reverse=True)

    def _aliases(self) -> dict[str, int]:
        rm = self.client.get_registered_model(self.model_name)
        return {str(k): int(v) for k, v in (rm.aliases or {}).items()}

    def get(self, version: int) -> ModelVersionInfo:
        if not self.has_model():  # and do not create an empty store just to say so
            raise UnknownVersionError(f"{self.model_name} has no version {version} (nothing is registered)")
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.model_name, str(int(version)))
        except MlflowException:
            raise UnknownVersionError(f"{self.model_name} has no version {version}") from None
        info = self._info(mv)
        aliases = sorted(a for a, v in self._aliases().items() if v == info.version)
        return ModelVersionInfo(
            info.version, info.run_id, info.source, info.created_at, aliases, info.tags, info.metrics
        )

    def alias_version(self, alias: str) -> int | None:
        """The version an alias points to, or None (cheap: one query, no run metrics)."""
        if not self.has_model():
            return None
        return self._aliases().get(alias)

    def champion(self) -> ModelVersionInfo | None:
        version = self.alias_version(CHAMPION)
        return None if version is None else self.get(version)

    def history(self) -> list[dict[str, Any]]:
        if not self.has_model():
            return []
        raw = self.client.get_registered_model(self.model_name).tags.get(HISTORY_TAG)
        return list(json.loads(raw)) if raw else []

    def model_tag(self, key: str) -> str | None:
        if not self.has_model():
            return None
        value = self.client.get_registered_model(self.model_name).tags.get(key)
        return None if value is None else str(value)

    def set_model_tag(self, key: str, value: str) -> None:
        with self._locked():
            self._ensure_registered_model()
            self.client.set_registered_model_tag(self.model_name, key, value)

    def set_version_tags(self, version: int, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, value)

    def local_bundle(self, version: int) -> Path:
        """A local folder holding the version's bundle (downloaded once when the store is remote)."""
        info = self.get(version)
        local = _local_path(info.source)
        if local is not None:
            if not local.is_dir():
                raise RegistryError(f"version {version}'s bundle {local} is missing from the artifact store")
            return local
        target = self.cache_dir / f"{self.model_name}-v{version}"
        if (target / ".complete").is_file():
            return target
        from mlflow.artifacts import download_artifacts

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=self.cache_dir))
        try:
            got = Path(
                download_artifacts(
                    artifact_uri=info.source, dst_path=str(tmp), tracking_uri=self.tracking_uri
                )
            )
            (got / ".complete").touch()
            if target.exists():
                shutil.rmtree(target)
            os.replace(got, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    # -- aliases --------------------------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        history = self.history()
        history.append(entry)
        self.client.set_registered_model_tag(self.model_name, HISTORY_TAG, json.dumps(history[-MAX_HISTORY:]))

    def promote(self, version: int, *, reason: str, actor: str | None = None) -> ModelVersionInfo:
        """Make ``version`` the champion (recorded in the history, so that a rollback can undo it)."""
        with self._locked():
            self.get(version)  # exists?
            current = self._aliases().get(CHAMPION)
            if current == version:
                raise RegistryError(f"version {version} is already the champion")
            self.client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
            if self._aliases().get(CHALLENGER) == version:
                self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
            self.set_version_tags(version, {"promotion": "champion", "promotion_reason": reason})
            self._record(
                {
                    "action": "promote",
                    "version": version,
                    "previous": current,
                    "at": _now(),
                    "by": actor,
                    "reason": reason,
                }
            )
        log.info("%s version %s is the champion (was %s): %s", self.model_name, version, current, reason)
        return self.get(version)

    def mark_challenger(self, version: int, *, reason: str) -> ModelVersionInfo:
        """Keep ``version`` as the challenger (not served), with the reason it was not promoted."""
        with self._locked():
            self.client.set_registered_model_alias(self.model_name, CHALLENGER, str(version))
            self.set_version_tags(version, {"promotion": "challenger", "promotion_reason": reason})
        return self.get(version)

    def _champion_stack(self) -> list[int]:
        """The champions in the order they reigned, with rolled-back reigns removed."""
        stack: list[int] = []
        for entry in self.history():
            if entry.get("action") == "promote":
                stack.append(int(entry["version"]))
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        return stack

    def previous_champion(self) -> int | None:
        """The version a rollback would restore (None when there is none)."""
        if not self.has_model():
            return None
        current = self._aliases().get(CHAMPION)
        stack = self._champion_stack()
        if current is not None and stack and stack[-1] != current:
            stack.append(current)  # the alias was set by hand outside prodtype: treat it as a reign
        return stack[-2] if len(stack) >= 2 else None

    def rollback(
        self, *, reason: str = "rollback", actor: str | None = None, to: int | None = None
    ) -> ModelVersionInfo:
        """Give the champion alias back to the champion before the current one (or to ``to``, the one
        prodtype's own records say came before)."""
        with self._locked():
            current = self._aliases().get(CHAMPION) if self.has_model() else None
            if current is None:
                raise RegistryError(f"{self.model_name} has no champion to roll back from")
            previous = to if to is not None else self.previous_champion()
            if previous is None:
                raise RegistryError(
                    f"version {current} is the first champion of {self.model_name}: there is no previous "
                    "champion to roll back to (promote a version instead)"
                )
            self.get(previous)
            self.client.set_registered_model_alias(self.model_name, CHAMPION, str(previous))
            self.set_version_tags(current, {"promotion": "rolled_back", "promotion_reason": reason})
            self.set_version_tags(
                previous, {"promotion": "champion", "promotion_reason": f"restored by rollback: {reason}"}
            )
            self._record(
                {
                    "action": "rollback",
                    "version": previous,
                    "previous": current,
                    "at": _now(),
                    "by": actor,
                    "reason": reason,
                }
            )
        log.info("%s rolled back from version %s to %s", self.model_name, current, previous)
        return self.get(previous)
