"""The Provenance a merge or unmerge job wrote, found again (so a crashed run that already wrote it
does not write a second one)."""

from __future__ import annotations

from shared.services.merge_deps import MergeDeps


def find_provenance(deps: MergeDeps, job: dict, activity: str) -> dict | None:
    """The job's Provenance for ``activity`` if a crashed earlier run already wrote it (one search
    instead of a second Provenance)."""
    marker = f"(merge job {job['job_id']})"
    for provenance in deps.fhir.search("Provenance", [("target", f"Patient/{job['master']}")]):
        codes = {c.get("code") for c in (provenance.get("activity") or {}).get("coding", [])}
        if activity in codes and any(marker in (r.get("text") or "") for r in provenance.get("reason", [])):
            return provenance
    return None
