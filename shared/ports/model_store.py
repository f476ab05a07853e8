"""Port: where a district's trained matching models are kept (``shared.linkage.model`` artefacts).

Every version is an object of its own, written once and never overwritten or deleted; one pointer names
the current version and moves only on an explicit promote, as a compare-and-set (a promote that raced
another fails instead of silently undoing it). Adapters: ``shared.adapters.model_store_gcs`` (a Cloud
Storage bucket per district: production) and ``shared.adapters.model_store_files`` (a directory: the
local stack); ``tests/fakes.InMemoryModelStore`` for the service tests.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

# Version names become object names and file names: letters, digits, dot, dash, underscore only.
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ModelVersionExists(Exception):
    """A version of that name is stored already: versions are never overwritten."""


class ModelVersionNotFound(LookupError):
    """No stored version of that name."""


class CurrentModelMoved(RuntimeError):
    """The pointer changed between reading it and moving it (another promote ran): nothing was changed."""


def check_version_name(version: str) -> str:
    if not isinstance(version, str) or not _VERSION_NAME.match(version):
        raise ValueError(f"{version!r} is not a model version name (letters, digits, '.', '-', '_'; at most 100)")
    return version


@dataclass(frozen=True)
class CurrentModel:
    """The pointer: which version decides, who promoted it and when, and the one it replaced."""

    version: str
    promoted_by: str
    promoted_at: str
    previous: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> CurrentModel:
        doc = json.loads(data)
        return cls(check_version_name(doc["version"]), str(doc["promoted_by"]), str(doc["promoted_at"]),
                   doc.get("previous"))


class ModelStore(ABC):
    @abstractmethod
    def describe(self) -> str:
        """Where the models are (a bucket or a directory), for messages and logs."""

    @abstractmethod
    def add(self, version: str, artefact: bytes) -> None:
        """Stores a new version; raises ``ModelVersionExists`` rather than overwrite one."""

    @abstractmethod
    def read(self, version: str) -> bytes:
        """A stored version's artefact; raises ``ModelVersionNotFound``."""

    @abstractmethod
    def versions(self) -> list[str]:
        """Every stored version's name, sorted."""

    @abstractmethod
    def current(self) -> CurrentModel | None:
        """The pointer, or None while no version was ever promoted."""

    @abstractmethod
    def move_current(self, to: CurrentModel, *, expected: str | None) -> None:
        """Points at ``to`` if the pointer still names ``expected`` (None: there is no pointer yet); raises
        ``CurrentModelMoved`` otherwise. The caller checked that ``to.version`` is stored."""
