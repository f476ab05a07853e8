"""Unmerge: put back exactly what a merge job wrote, from its journal.

A resource changed since the merge is reported, never clobbered; the patients get their pre-merge
version when untouched since, else exactly what the merge added is taken out. The index records
the unmerge first, so the automation does not merge the patients straight back.

Only a finished job (done, or failed: what its tasks rewrote) can be unmerged: a running or
finalising one is still writing, and undoing it under its workers would leave its group's request
running forever. ``roll_back`` is the same restore without the index and Provenance, for a job that
fails (the sweeper, a finalise refused for a chain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.clock import now_iso
from shared.concurrency import run_concurrently
from shared.domain.merge_job import JobStatus
from shared.domain.survivorship import build_provenance, revert_duplicate, revert_master
from shared.fhir.references import patient_references, rewrite_patient_references, without_meta
from shared.logging import get_logger
from shared.services.merge_deps import MergeDeps
from shared.services.merge_task import follow_job
from shared.services.provenance import find_provenance
from shared.services.rewrite import NOT_NEEDED, chunks, put_entry, version_of

log = get_logger(__name__)


class UnmergeRefused(RuntimeError):
    """The job cannot be unmerged now (the message says why and what to do); nothing was written."""


@dataclass
class UnmergeReport:
    job_id: str
    restored: int = 0
    patients: int = 0
    conflicts: list[dict] = field(default_factory=list)   # changed since the merge: reported, not clobbered
    provenance_id: str | None = None


def _resolve_version_after(deps: MergeDeps, job: dict, entry: dict, current: dict) -> str | None:
    """A journal entry left pending by a crash between the write and the journal update: the
    current version is ours if it is exactly the rewrite of the version before."""
    before = deps.fhir.vread(entry["resource_type"], entry["id"], entry["version_before"])
    intended, _ = rewrite_patient_references(before, {d: job["master"] for d in job["duplicates"]})
    return version_of(current) if without_meta(intended) == without_meta(current) else None


def _restore_references(deps: MergeDeps, job: dict, references: list[dict], report: UnmergeReport) -> None:
    def plan_restore(entry: dict):
        current = deps.fhir.read(entry["resource_type"], entry["id"])
        if entry.get("status") == NOT_NEEDED:
            # The worker found no duplicate left: either its own write landed unseen and someone edited
            # it since, or someone else moved the reference. On the master now, it may be ours: report.
            on_master = any(pid == job["master"] for _, pid in patient_references(current))
            return entry, None, current if on_master else None
        after = entry.get("version_after") or _resolve_version_after(deps, job, entry, current)
        if after is None or version_of(current) != after:
            return entry, None, current
        before = deps.fhir.vread(entry["resource_type"], entry["id"], entry["version_before"])
        return entry, before, current

    planned = run_concurrently(plan_restore, references, deps.settings.fhir_concurrency)
    writable = []
    for entry, before, current in planned:
        if current is None:
            continue
        if before is None:
            report.conflicts.append({"resource_type": entry["resource_type"], "id": entry["id"],
                                     "reason": "changed-since-merge"})
        else:
            restored = without_meta(before)
            writable.append((entry, put_entry(restored, version_of(current))))
    for chunk in chunks(writable, deps.settings.merge_batch_size):
        outcomes = deps.fhir.batch([put for _, put in chunk])
        for (entry, _), outcome in zip(chunk, outcomes):
            if outcome.ok:
                report.restored += 1
            else:
                report.conflicts.append({"resource_type": entry["resource_type"], "id": entry["id"],
                                         "reason": f"status-{outcome.status}"})


def _restore_patients(deps: MergeDeps, job: dict, patients: list[dict], report: UnmergeReport) -> None:
    """The pre-merge version when untouched since, else take out exactly what was added."""
    puts = []
    for entry in patients:
        current = deps.fhir.read("Patient", entry["id"])
        before = deps.fhir.vread("Patient", entry["id"], entry["version_before"])
        if entry.get("version_after") and version_of(current) == entry["version_after"]:
            wanted = without_meta(before)
        elif entry["role"] == "master":
            wanted = revert_master(current, entry.get("added") or {})
        else:
            wanted = revert_duplicate(current, before, job["master"])
        if without_meta(wanted) != without_meta(current):
            puts.append((entry, put_entry(wanted, version_of(current))))
    outcomes = deps.fhir.batch([put for _, put in puts]) if puts else []
    for (entry, _), outcome in zip(puts, outcomes):
        if outcome.ok:
            report.patients += 1
        else:
            report.conflicts.append({"resource_type": "Patient", "id": entry["id"],
                                     "reason": f"status-{outcome.status}"})


def _journal(deps: MergeDeps, job_id: str) -> tuple[list[dict], list[dict]]:
    entries = [e for e in deps.jobs.journal_entries(job_id) if e.get("status") in ("done", "pending", NOT_NEEDED)]
    return ([e for e in entries if e.get("kind") != "patient"],
            [e for e in entries if e.get("kind") == "patient" and e.get("status") != NOT_NEEDED])


def roll_back(job: dict, deps: MergeDeps) -> UnmergeReport:
    """Puts back what a failing job wrote (its journal), leaving the index and Provenance alone."""
    report = UnmergeReport(job["job_id"])
    references, patients = _journal(deps, job["job_id"])
    _restore_references(deps, job, references, report)
    _restore_patients(deps, job, patients, report)
    return report


def unmerge(job_id: str, deps: MergeDeps) -> UnmergeReport:
    job = deps.jobs.get(job_id)
    if job is None:
        raise KeyError(f"merge job {job_id} not found")
    report = UnmergeReport(job_id)
    if job["status"] == JobStatus.UNMERGED:
        report.provenance_id = job.get("unmerge_provenance_id")
        return report
    if job["status"] in (JobStatus.RUNNING, JobStatus.FINALISING):
        raise UnmergeRefused(
            f"merge job {job_id} is {job['status']}: it is still writing, and undoing it now would leave "
            f"its group's request running. Wait until it is done (python -m ops jobs --stuck shows jobs "
            f"stuck past {deps.settings.stuck_after_seconds} s; the sweeper fails those), then unmerge.")
    # First, so the live late-reference fix does not rewrite what this restores back to the master.
    deps.jobs.update(job_id, unmerging=True)
    references, patients = _journal(deps, job_id)
    _restore_references(deps, job, references, report)

    # Before the patients come back to life (their change events reach matching): remember that a
    # human undid this merge, or the automation would merge them straight back.
    deps.index.record_unmerge(job["group"], job["master"], job["duplicates"])
    _restore_patients(deps, job, patients, report)

    provenance = find_provenance(deps, job, "unmerge")
    if provenance is None:
        master = deps.fhir.read("Patient", job["master"])
        provenance = deps.fhir.create(build_provenance(
            master_id=job["master"], master_version=version_of(master),
            duplicate_versions={d: version_of(deps.fhir.read("Patient", d)) for d in job["duplicates"]},
            activity="unmerge", reason="unmerge", requested_by=None, evidence=None, job_id=job_id))
    report.provenance_id = provenance["id"]
    deps.jobs.update(job_id, status=JobStatus.UNMERGED, unmerged_at=now_iso(), unmerge_provenance_id=provenance["id"],
                     unmerge_conflicts=report.conflicts[:100])
    follow_job(deps.fhir, {**job, "status": JobStatus.UNMERGED})   # a Patient/$merge Task, if any
    log.info("merge_unmerged", job_id=job_id, restored=report.restored, conflicts=len(report.conflicts))
    return report
