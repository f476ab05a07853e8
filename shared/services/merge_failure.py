"""A merge job that cannot finish fails: it stops, what it wrote is put back from its journal, and its
group's request is released (members live again; those that waited get their follow-up). Used by the
finaliser (a chain refused) and the sweeper (stuck past its republishes). Safe to run again: a second
run finds nothing left to put back and the request already released."""

from __future__ import annotations

from shared.clock import now_iso
from shared.domain.merge_job import JobStatus
from shared.logging import get_logger
from shared.services.merge_deps import MergeDeps
from shared.services.merge_task import follow_job
from shared.services.unmerge import roll_back

log = get_logger(__name__)


def release_request(deps: MergeDeps, group: str, request_id: str, reason: str) -> str | None:
    """Releases the group's request; publishes the follow-up for members that waited. Its id, if any."""
    follow_up = deps.index.release_request(group, request_id, reason)
    if follow_up is None:
        return None
    deps.publisher.send(follow_up)
    deps.index.mark_published(group, follow_up.request_id)
    return follow_up.request_id


def fail_job(deps: MergeDeps, job: dict, reason: str) -> dict | None:
    """Marks the job failed (workers and the finaliser stop at that), rolls back, releases the request."""
    job_id = job["job_id"]
    deps.jobs.update(job_id, status=JobStatus.FAILED, failed_reason=reason, failed_at=now_iso())
    follow_job(deps.fhir, {**job, "status": JobStatus.FAILED})   # a Patient/$merge Task, if any
    report = roll_back(job, deps)
    follow_up = release_request(deps, job["group"], job["request_id"], reason)
    deps.jobs.update(job_id, rolled_back=report.restored + report.patients,
                     rollback_conflicts=report.conflicts[:100])
    # The event the log-based metric dedup_merge_failed counts (infra/modules/monitoring).
    log.error("merge_job_failed", job_id=job_id, nik_token=job.get("nik_token"), reason=reason,
              restored=report.restored + report.patients, conflicts=len(report.conflicts), follow_up=follow_up)
    return deps.jobs.get(job_id)
