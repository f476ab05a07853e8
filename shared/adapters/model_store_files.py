"""The model store in a directory (port ``shared.ports.model_store``): the local stack's (``dedup up`` sets
``DEDUP_MODEL_STORE`` to ``.stack/models``) and any machine without a bucket.

    <dir>/versions/<version>.json   one file per version, created exclusively (never overwritten)
    <dir>/current.json              the pointer, replaced atomically (rename) under a lock file
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.ports.model_store import (
    CurrentModel,
    CurrentModelMoved,
    ModelStore,
    ModelVersionExists,
    ModelVersionNotFound,
    check_version_name,
)


class FileModelStore(ModelStore):
    def __init__(self, directory: Path | str):
        self.directory = Path(directory)
        self._versions = self.directory / "versions"
        self._pointer = self.directory / "current.json"

    def describe(self) -> str:
        return f"directory {self.directory}"

    def _path(self, version: str) -> Path:
        return self._versions / f"{check_version_name(version)}.json"

    def add(self, version: str, artefact: bytes) -> None:
        path = self._path(version)
        self._versions.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(artefact)
        try:
            os.link(partial, path)   # fails when the name exists: a version is written once
        except FileExistsError:
            raise ModelVersionExists(f"model version {version} exists in {self.describe()}") from None
        finally:
            partial.unlink(missing_ok=True)

    def read(self, version: str) -> bytes:
        try:
            return self._path(version).read_bytes()
        except FileNotFoundError:
            raise ModelVersionNotFound(f"no model version {version} in {self.describe()}") from None

    def versions(self) -> list[str]:
        if not self._versions.is_dir():
            return []
        return sorted(p.name[:-len(".json")] for p in self._versions.glob("*.json") if not p.name.startswith("."))

    def current(self) -> CurrentModel | None:
        try:
            return CurrentModel.from_json(self._pointer.read_bytes())
        except FileNotFoundError:
            return None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def move_current(self, to: CurrentModel, *, expected: str | None) -> None:
        with self._locked():
            now = self.current()
            if (now.version if now else None) != expected:
                raise CurrentModelMoved(f"the current model is {now.version if now else 'none'}, not {expected}")
            partial = self._pointer.with_name(f".current.{os.getpid()}.partial")
            partial.write_bytes(to.to_json())
            partial.replace(self._pointer)
