"""Run folders shared through the object store, for retrain steps that run on different machines.

The Airflow DAG runs each step (``prodtype retrain --step STEP --run-name RUN``) as its own task, and on a
distributed executor the tasks of one run may land on different workers that share nothing but the
database, the object store and the registry. With ``PRODTYPE_IMAGE_STORE=s3://bucket/prefix`` set, a step
therefore starts by making its local run folder (``<storage>/loop/runs/RUN``) a copy of
``s3://bucket/prefix/runs/RUN/`` and, once it succeeded, makes the store a copy of the folder again: new and
changed files are uploaded, files the step removed (the candidate bundle, once registered) are deleted. A
step that fails pushes nothing, so the next try starts from what the last successful step left. The
recorded evaluation split (``<storage>/loop/eval_split.json``) travels the same way, under ``loop/``, so
every machine evaluates on the same products.

Without an object store nothing is copied: the steps share the local folder, as on one machine.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prodtype.config import Settings
from prodtype.loop.evalset import SPLIT_FILE
from prodtype.serving.object_store import ObjectStore

log = logging.getLogger(__name__)

RUNS = "runs"
LOOP = "loop"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same(path: Path, size: int, etag: str) -> bool:
    """Whether the local file holds the object (size, then MD5 against a single-part ETag)."""
    return path.is_file() and path.stat().st_size == size and "-" not in etag and _md5(path) == etag


def _local_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


class RunFolderSync:
    """Copies between one run folder (and the evaluation split) and their place in the object store."""

    def __init__(self, objects: ObjectStore, run_dir: Path, loop_dir: Path) -> None:
        self.objects = objects
        self.run_dir = Path(run_dir)
        self.loop_dir = Path(loop_dir)
        self.prefix = f"{RUNS}/{self.run_dir.name}"

    def _remote(self) -> dict[str, tuple[int, str]]:
        strip = len(self.prefix) + 1
        return {key[strip:]: (size, etag) for key, size, etag in self.objects.list(self.prefix)}

    def pull(self) -> int:
        """Make the local run folder what the store holds (the store is the truth); the number of files
        downloaded."""
        remote = self._remote()
        local = _local_files(self.run_dir)
        for name, path in local.items():
            if name not in remote:  # left by a step that failed here, or removed by a later step elsewhere
                path.unlink()
        fetched = 0
        for name, (size, etag) in remote.items():
            target = self.run_dir / name
            if not _same(target, size, etag):
                self.objects.download_file(f"{self.prefix}/{name}", target)
                fetched += 1
        _prune_empty_folders(self.run_dir)
        split = self.loop_dir / SPLIT_FILE
        found = {key: (size, etag) for key, size, etag in self.objects.list(LOOP)}
        key = f"{LOOP}/{SPLIT_FILE}"
        if key in found and not _same(split, *found[key]):
            self.objects.download_file(key, split)
        return fetched

    def push(self) -> int:
        """Make the store what the local run folder holds; the number of files uploaded."""
        remote = self._remote()
        local = _local_files(self.run_dir)
        sent = 0
        for name, path in local.items():
            if name in remote and _same(path, *remote[name]):
                continue
            self.objects.upload_file(f"{self.prefix}/{name}", path)
            sent += 1
        for name in remote.keys() - local.keys():
            self.objects.delete(f"{self.prefix}/{name}")
        split = self.loop_dir / SPLIT_FILE
        if split.is_file():
            key = f"{LOOP}/{SPLIT_FILE}"
            found = {k: (size, etag) for k, size, etag in self.objects.list(LOOP)}
            if key not in found or not _same(split, *found[key]):
                self.objects.upload_file(key, split)
        return sent


def _prune_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def shared_run_folder(settings: Settings, run_dir: Path) -> Iterator[None]:
    """Around one retrain step: pull the run folder from the object store before, push it after success
    (nothing without PRODTYPE_IMAGE_STORE)."""
    objects = ObjectStore.from_settings(settings)
    if objects is None:
        yield
        return
    sync = RunFolderSync(objects, run_dir, settings.loop_dir)
    fetched = sync.pull()
    log.info("run folder %s: %d file(s) from %s", run_dir.name, fetched, objects.url(sync.prefix))
    yield
    sent = sync.push()
    log.info("run folder %s: %d file(s) to %s", run_dir.name, sent, objects.url(sync.prefix))
