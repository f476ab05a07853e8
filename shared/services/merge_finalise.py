"""merge-finalise -> sweep every type again, link the patients, write the Provenance, complete the
request in the index (publishing its follow-up, if members matched while the merge ran).

Safe to run twice: the patient updates and the Provenance are idempotent (a second run finds
nothing to do, and a Provenance a crashed run already wrote is found instead of written again).
"""

from __future__ import annotations

from shared.clock import now_iso
from shared.concurrency import run_concurrently
from shared.domain.chains import chain_in_patients
from shared.domain.merge_job import CLOSED_TASK_STATES, JobStatus, TaskStatus
from shared.domain.survivorship import build_provenance, fill_master, link_duplicate
from shared.fhir.references import without_meta
from shared.logging import get_logger
from shared.messages import FinaliseMerge, MergeRequested
from shared.services.merge_deps import MergeDeps, MergeTaskFailed
from shared.services.merge_failure import fail_job
from shared.services.merge_task import follow_job
from shared.services.provenance import find_provenance
from shared.services.rewrite import (
    MAX_ENTRY_ATTEMPTS,
    MAX_SEARCH_ROUNDS,
    TypeResult,
    etag_version,
    everything_referencing,
    put_entry,
    rewrite_type,
    supports_everything,
    version_of,
    write_rewrites,
)

log = get_logger(__name__)


def _merge_patients(deps: MergeDeps, job: dict) -> None:
    """Duplicates -> inactive + replaced-by; master <- replaces links, golden tag, survivorship.
    Journals each patient's version before and after; a second run finds nothing to change."""
    settings, master_id, job_id = deps.settings, job["master"], job["job_id"]
    ids = [master_id, *job["duplicates"]]
    for _ in range(MAX_ENTRY_ATTEMPTS):
        current = {pid: deps.fhir.read("Patient", pid) for pid in ids}
        duplicates = [current[pid] for pid in job["duplicates"]]
        new_master, added = fill_master(current[master_id], duplicates,
                                        golden_tag_system=settings.golden_tag_system, nik_system=settings.nik_system)
        wanted = {master_id: new_master, **{d["id"]: link_duplicate(d, master_id) for d in duplicates}}
        changed = [pid for pid in ids if without_meta(wanted[pid]) != without_meta(current[pid])]
        if not changed:
            return
        deps.jobs.journal_put(job_id, [{
            "resource_type": "Patient", "id": pid, "kind": "patient",
            "role": "master" if pid == master_id else "duplicate",
            "version_before": version_of(current[pid]), "version_after": None,
            "added": added if pid == master_id else {}, "status": "pending", "job_id": job_id,
        } for pid in changed])
        outcomes = deps.fhir.batch([put_entry(wanted[pid], version_of(current[pid])) for pid in changed])
        done = [{"resource_type": "Patient", "id": pid, "status": "done",
                 "version_after": version_of(o.resource or {}) or etag_version(o.etag)}
                for pid, o in zip(changed, outcomes) if o.ok]
        if done:
            deps.jobs.journal_put(job_id, done, merge=True)
        failed = [(pid, o.status) for pid, o in zip(changed, outcomes) if not o.ok]
        if not failed:
            return
        if any(status != 412 for _, status in failed):
            log.warning("merge_patient_write_failed", job_id=job_id,
                        statuses=[status for _, status in failed])
    raise MergeTaskFailed(f"merge job {job_id}: patients could not be updated")


def _sweep_everything(deps: MergeDeps, job: dict, resource_types: list[str]) -> list[tuple[str, TypeResult]]:
    """The finaliser's sweep over every type with one ``$everything`` per duplicate: rewrite what
    still references a duplicate, and look again until nothing does."""
    totals: dict[str, TypeResult] = {}
    for _ in range(MAX_SEARCH_ROUNDS):
        found = everything_referencing(deps, job, resource_types)
        if not found:
            return list(totals.items())
        written = run_concurrently(lambda item: (item[0], write_rewrites(deps, job, list(item[1].values()))),
                                   sorted(found.items()), deps.settings.fhir_concurrency)
        for resource_type, result in written:
            total = totals.setdefault(resource_type, TypeResult())
            total.found += len(found[resource_type])
            total.rewritten += result.rewritten
            total.conflicts += result.conflicts
            total.failures += result.failures
        if any(result.failures for _, result in written):
            return list(totals.items())
    return [*totals.items(), ("*", TypeResult(failures=[{"resource_type": None, "id": None,
                                                          "status": "still-referenced"}]))]


def _complete_request(deps: MergeDeps, job: dict) -> MergeRequested | None:
    return deps.index.complete_request(job["group"], job["request_id"], job["master"], job["duplicates"])


def finalise(message: FinaliseMerge, deps: MergeDeps) -> dict | None:
    """merge-finalise -> sweep every type again, link the patients, Provenance, index."""
    job_id = message.job_id
    job = deps.jobs.get(job_id)
    if job is None or job["status"] in (JobStatus.DONE, JobStatus.UNMERGED, JobStatus.FAILED):
        return job
    pending = [t for t, task in job["types"].items() if task.get("status") not in CLOSED_TASK_STATES]
    if pending:
        raise MergeTaskFailed(f"merge job {job_id}: finalise before {len(pending)} task(s) are done")
    if not job.get("finalise_started_at"):
        # From now on the finalise message was delivered: its claim is never taken over again.
        deps.jobs.update(job_id, finalise_started_at=now_iso())
    # Before anything is linked: a master already replaced, or a duplicate that is already the master
    # of another merge, would make a chain. The job fails and what its tasks rewrote is put back.
    chain = chain_in_patients(deps.fhir.read("Patient", job["master"]),
                              [deps.fhir.read("Patient", d) for d in job["duplicates"]], job["duplicates"])
    if chain:
        return fail_job(deps, job, f"chain:{chain}")

    # Resources created or changed while the tasks ran are caught here (and journaled).
    swept_types = [(t, task["params"]) for t, task in sorted(job["types"].items())
                   if task.get("status") == TaskStatus.DONE]
    if supports_everything(deps.fhir.capability()):
        results = _sweep_everything(deps, job, [t for t, _ in swept_types])
    else:
        results = run_concurrently(lambda item: (item[0], rewrite_type(deps, job, item[0], item[1])),
                                   swept_types, deps.settings.fhir_concurrency)
    failures = [f for _, r in results for f in r.failures]
    swept = {t: r.rewritten for t, r in results if r.rewritten}
    if failures:
        deps.jobs.update(job_id, status=JobStatus.FINALISING, finalise_failures=failures[:100])
        raise MergeTaskFailed(f"merge job {job_id}: {len(failures)} resource(s) still reference a duplicate")
    deps.jobs.update(job_id, verified_at=now_iso(), swept=swept)

    _merge_patients(deps, job)

    if not job.get("provenance_id"):
        provenance = find_provenance(deps, job, "merge")
        if provenance is None:
            before = {e["id"]: e["version_before"] for e in deps.jobs.journal_entries(job_id, kind="patient")}
            master = deps.fhir.read("Patient", job["master"])
            duplicate_versions = {d: before.get(d) or version_of(deps.fhir.read("Patient", d))
                                  for d in job["duplicates"]}
            provenance = deps.fhir.create(build_provenance(
                master_id=job["master"], master_version=version_of(master), duplicate_versions=duplicate_versions,
                activity="merge", reason=job.get("reason") or "merge", requested_by=job.get("requested_by"),
                evidence=job.get("evidence"), job_id=job_id))
        deps.jobs.update(job_id, provenance_id=provenance["id"])

    follow_up = _complete_request(deps, job)
    if follow_up:
        deps.publisher.send(follow_up)
        deps.index.mark_published(job["group"], follow_up.request_id)
    # A Patient/$merge Task, if any, before the job is marked done: a failed update is redelivered.
    follow_job(deps.fhir, {**job, "status": JobStatus.DONE})
    deps.jobs.update(job_id, status=JobStatus.DONE, completed_at=now_iso())
    log.info("merge_done", job_id=job_id, nik_token=job.get("nik_token"), duplicates=len(job["duplicates"]))
    return deps.jobs.get(job_id)

