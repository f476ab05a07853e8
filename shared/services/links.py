"""A patient's link history: its merges and unmerges (merge jobs and their Provenance), its review
decisions and where the index has it now. Read only; what `dedup links PATIENT` prints."""

from __future__ import annotations

from dataclasses import dataclass

from shared.fhir.references import patient_id_of
from shared.ports.fhir import FhirPort
from shared.ports.index import GroupRepository, PatientKeyRepository, ReviewItemRepository
from shared.ports.merge_jobs import MergeJobsRepository


@dataclass
class LinkSources:
    fhir: FhirPort
    keys: PatientKeyRepository
    groups: GroupRepository
    reviews: ReviewItemRepository
    jobs: MergeJobsRepository


def _role(job: dict, patient_id: str) -> str:
    return "master" if job.get("master") == patient_id else "duplicate"


def patient_links(patient_id: str, sources: LinkSources) -> dict:
    """{patient, replaced_by, index: [...], merges: [...], provenance: [...], reviews: [...]}, oldest first."""
    patient = sources.fhir.read("Patient", patient_id)   # NotFound for an unknown id
    replaced_by = [patient_id_of(link["other"].get("reference", "")) for link in patient.get("link") or []
                   if link.get("type") == "replaced-by" and link.get("other")]
    keys = sources.keys.get(patient_id)
    index = []
    for group_id in (keys.all_groups if keys else []):
        group = sources.groups.get(group_id)
        member = (group.members.get(patient_id) if group else None) or {}
        index.append({"group": group_id, "status": member.get("status"), "reason": member.get("reason"),
                      "group_master": group.master if group else None,
                      "request": ({"id": group.request.id, "status": str(group.request.status)}
                                  if group and group.request and patient_id in group.request.participants else None),
                      "confirmed_with": sorted(_others(group.confirmed, patient_id)) if group else [],
                      "do_not_match_with": sorted(_others(group.do_not_match, patient_id)) if group else []})
    merges = [{"job_id": job["job_id"], "role": _role(job, patient_id), "status": job.get("status"),
               "master": job.get("master"), "duplicates": list(job.get("duplicates") or []),
               "reason": job.get("reason"), "requested_by": job.get("requested_by"),
               "created_at": job.get("created_at"), "completed_at": job.get("completed_at"),
               "unmerged_at": job.get("unmerged_at")}
              for job in sources.jobs.all()
              if job.get("master") == patient_id or patient_id in (job.get("duplicates") or [])]
    provenance = []
    # Provenance targets the master (its duplicates are entities): search the patient's own, and its
    # masters' (kept when they name one of this patient's jobs).
    job_markers = {f"(merge job {row['job_id']})" for row in merges}
    seen: set[str] = set()
    for target in dict.fromkeys([patient_id, *(row["master"] for row in merges if row["master"])]):
        for resource in sources.fhir.search("Provenance", [("target", f"Patient/{target}")]):
            reasons = " ".join(r.get("text") or "" for r in resource.get("reason") or [])
            if resource.get("resourceType") != "Provenance" or resource.get("id") in seen or (
                    target != patient_id and not any(marker in reasons for marker in job_markers)):
                continue
            seen.add(resource.get("id"))
            provenance.append(_provenance_row(resource))
    reviews = [{"id": item.id, "reason": item.reason, "status": str(item.status), "patient_ids": item.patient_ids,
                "created_at": item.created_at, **item.decision}
               for item in sources.reviews.all() if patient_id in item.patient_ids]
    by_time = lambda row, *keys: next((row.get(k) for k in keys if row.get(k)), "")  # noqa: E731
    return {
        "patient": patient_id, "active": patient.get("active", True), "replaced_by": replaced_by,
        "index": index,
        "merges": sorted(merges, key=lambda row: by_time(row, "created_at")),
        "provenance": sorted(provenance, key=lambda row: by_time(row, "recorded")),
        "reviews": sorted(reviews, key=lambda row: by_time(row, "created_at")),
    }


def _provenance_row(resource: dict) -> dict:
    return {"id": resource.get("id"), "recorded": resource.get("recorded"),
            "activity": [c.get("code") for c in (resource.get("activity") or {}).get("coding") or []],
            "targets": [t.get("reference") for t in resource.get("target") or []],
            "entities": [(e.get("what") or {}).get("reference") for e in resource.get("entity") or []],
            "reason": [r.get("text") for r in resource.get("reason") or [] if r.get("text")]}


def _others(pairs: set[str], patient_id: str) -> set[str]:
    return {other for pair in pairs for other in pair.split("|")
            if patient_id in pair.split("|") and other != patient_id}
