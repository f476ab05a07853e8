"""Versions of a district's matching model: names and what each one says about itself. Pure.

A trained artefact (``tools.linkage.train``) becomes a version when it is stored: its name is the UTC time
it was created and the start of the SHA-256 of its content (``20261130-214107-3f9a0c12b4de``), so names
sort by time and two different models never share one. What ``dedup model list`` shows travels inside the
artefact (``trained_on``): who created it, when, on how many records, from which source, and how it
compared with the model current at the time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from shared.ports.model_store import check_version_name


def stamped(artefact: dict, *, created_by: str, created_at: datetime) -> tuple[str, bytes]:
    """The version name and the bytes to store: ``artefact`` with ``version`` set and ``trained_on``
    carrying ``created_by`` / ``created_at``."""
    trained_on = dict(artefact.get("trained_on") or {})
    trained_on.update(created_by=created_by, created_at=created_at.isoformat(timespec="seconds"))
    body = {key: value for key, value in artefact.items() if key != "version"} | {"trained_on": trained_on}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    version = check_version_name(f"{created_at:%Y%m%d-%H%M%S}-{digest}")
    return version, (json.dumps(body | {"version": version}, indent=1, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class ModelInfo:
    version: str
    created_at: str | None
    created_by: str | None
    patients: int | None          # records it was trained on
    source: str | None            # where they were read (no patient data: a URL or a folder)
    size_bytes: int
    compared: dict | None = None  # the band comparison with the model current when it was trained

    @classmethod
    def of(cls, version: str, artefact: bytes) -> ModelInfo:
        trained_on = json.loads(artefact).get("trained_on") or {}
        return cls(version, trained_on.get("created_at") or trained_on.get("trained_at"),
                   trained_on.get("created_by"), trained_on.get("patients"), trained_on.get("source"),
                   len(artefact), trained_on.get("compared_with"))
