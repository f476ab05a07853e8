"""Finding and rewriting references to Patients anywhere in a resource (pure functions).

A reference can sit in any element (``subject``, ``performer``, ``extension[].valueReference``,
``contained[]``, ...), so the whole JSON tree is walked and every ``reference`` string is looked at.
Accepted forms: relative ``Patient/x``, absolute ``http(s)://host/base/Patient/x`` and either of those
versioned (``.../_history/n``). Nothing but the matching ``reference`` strings is changed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

# [base/]Patient/<id>[/_history/<vid>]  -- ids per FHIR: [A-Za-z0-9-.]{1,64}
_PATIENT_REF = re.compile(
    r"^(?P<base>(?:https?://[^\s?#]*?/)?)Patient/(?P<id>[A-Za-z0-9\-.]{1,64})(?P<history>/_history/[A-Za-z0-9\-.]{1,64})?$"
)

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ReferenceChange:
    path: Path          # where the reference string sits, e.g. ("performer", 0, "reference")
    duplicate: str      # the patient id that was referenced
    before: str
    after: str

    def as_dict(self) -> dict:
        return {"path": path_text(self.path), "duplicate": self.duplicate, "before": self.before, "after": self.after}


def patient_id_of(reference: str) -> str | None:
    """The Patient id a reference string points to, or None if it is not a Patient reference."""
    match = _PATIENT_REF.match(reference) if isinstance(reference, str) else None
    return match["id"] if match else None


def path_text(path: Path) -> str:
    """("a", 0, "reference") -> "a[0].reference" (a stable, readable form for the journal)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _walk(node, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield path + (key,), value
            else:
                yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, path + (index,))


def patient_references(resource: dict) -> list[tuple[Path, str]]:
    """Every (path, patient id) of a Patient reference in the resource."""
    found = []
    for path, reference in _walk(resource, ()):
        patient_id = patient_id_of(reference)
        if patient_id is not None:
            found.append((path, patient_id))
    return found


def references_any(resource: dict, patient_ids) -> bool:
    wanted = set(patient_ids)
    return any(pid in wanted for _, pid in patient_references(resource))


def rewrite_patient_references(
    resource: dict, replacements: Mapping[str, str]
) -> tuple[dict, list[ReferenceChange]]:
    """Returns (a rewritten copy, the changes). ``replacements`` maps duplicate id -> master id.

    The form of each reference is kept (relative stays relative, an absolute base stays); a version
    suffix is dropped, since the duplicate's version says nothing about the master's. The input is
    never modified; with no match the copy equals the input.
    """
    changes: list[ReferenceChange] = []
    for path, reference in _walk(resource, ()):
        match = _PATIENT_REF.match(reference)
        if match and match["id"] in replacements:
            after = f"{match['base']}Patient/{replacements[match['id']]}"
            changes.append(ReferenceChange(path, match["id"], reference, after))
    if not changes:
        return copy.deepcopy(resource), []
    rewritten = copy.deepcopy(resource)
    for change in changes:
        node = rewritten
        for part in change.path[:-1]:
            node = node[part]
        node[change.path[-1]] = change.after
    return rewritten, changes


def without_meta(resource: dict) -> dict:
    """The resource without ``meta.versionId`` / ``meta.lastUpdated`` (server-set), for comparisons."""
    out = copy.deepcopy(resource)
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            out.pop("meta")
    return out
