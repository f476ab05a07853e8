"""Late references, fixed live: a clinical resource written (or changed) with a reference to a patient
that is already merged away is rewritten to the master within seconds of the change, journaled
under that merge like ``reconcile`` does (so an unmerge of the job restores it too).

Called for every clinical change (``resource-changes``). A resource with no patient reference costs
nothing; one with references costs one indexed query per referenced patient. A reference to a patient
whose merge still has tasks running is left to that merge's finalising sweep, which comes later; once
the tasks are done the sweep may already have passed, so the change is retried (raise -> Pub/Sub
redelivers with backoff) until the job is done and then rewritten here. The scheduled ``reconcile``
stays as the safety net.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.domain.merge_job import JobStatus
from shared.fhir.errors import Gone, NotFound
from shared.fhir.references import patient_references
from shared.logging import get_logger
from shared.resource_changes import ResourceChanged
from shared.services.merge_deps import MergeDeps
from shared.services.rewrite import write_rewrites

log = get_logger(__name__)
_IN_FLIGHT = (JobStatus.RUNNING, JobStatus.FINALISING)


class MergeStillRunning(RuntimeError):
    """A referenced patient's merge is running: retried later (its sweep may already miss this)."""


@dataclass
class LiveFixReport:
    rewritten: int = 0
    jobs: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def fix_late_references(changes: list[ResourceChanged], deps: MergeDeps) -> LiveFixReport:
    report = LiveFixReport()
    for change in changes:
        # A body in the message is a hint only (anyone able to publish could have written it): it can
        # say that nothing needs doing, never what to write. What is rewritten is read from the store.
        if change.resource is not None and not patient_references(change.resource):
            continue
        try:
            resource = deps.fhir.read(change.resource_type, change.id)
        except (NotFound, Gone):
            continue
        referenced = sorted({pid for _, pid in patient_references(resource)})
        owners: dict[str, dict] = {}
        for patient_id in referenced:
            for job in deps.jobs.with_duplicate(patient_id):
                if job.get("status") in _IN_FLIGHT and job.get("remaining"):
                    continue   # the job's finalising sweep, still to come, rewrites it
                if job.get("status") in _IN_FLIGHT:
                    raise MergeStillRunning(f"{change.resource_type}/{change.id} references a patient of "
                                            f"running merge job {job.get('job_id')}")
                if job.get("status") == JobStatus.DONE and not job.get("unmerging"):
                    owners[job["job_id"]] = job   # (an unmerge in progress puts references back on purpose)
        for job_id, job in sorted(owners.items()):
            result = write_rewrites(deps, job, [resource])
            report.rewritten += result.rewritten
            report.failures += result.failures
            if result.rewritten:
                report.jobs.append(job_id)
                # Marked, so the main job can tell live fixes from what reconcile had to do.
                deps.jobs.journal_put(job_id, [{"resource_type": change.resource_type, "id": change.id,
                                                "fixed_live": True}], merge=True)
            if result.rewritten and len(owners) > 1:
                resource = deps.fhir.read(change.resource_type, change.id)   # the next job sees this write
    if report.rewritten or report.failures:
        log.info("late_references_fixed_live", rewritten=report.rewritten, jobs=report.jobs,
                 failures=len(report.failures))
    if report.failures:
        raise RuntimeError(f"{len(report.failures)} late reference(s) not rewritten; redelivered")
    return report
