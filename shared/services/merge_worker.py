"""merge-tasks -> one resource type of a merge job: rewrite every reference to a duplicate in it.

Safe to run twice: a redelivered task re-searches (or, given the fan-out's resources, writes them
with their old versions), and what it already rewrote no longer matches. The task that completes
the last type claims the finalise with an atomic create, so exactly one finalise message goes out.
"""

from __future__ import annotations

from shared.clock import now_iso
from shared.domain.merge_job import OPEN_TASK_STATES, JobStatus, TaskStatus
from shared.logging import get_logger
from shared.messages import FinaliseMerge, MergeTask
from shared.services.merge_deps import MergeDeps, MergeTaskFailed
from shared.services.rewrite import TypeResult, rewrite_type

log = get_logger(__name__)

# A worker reads only these fields of its job (plus its own type's entry).
TASK_JOB_FIELDS = ("job_id", "master", "duplicates", "status", "remaining", "finalise_published")


def publish_finalise_once(deps: MergeDeps, job_id: str) -> bool:
    """Publishes the job's finalise message if this caller wins the claim (the outbox)."""
    if not deps.jobs.claim_finalise(job_id):
        return False
    try:
        deps.publisher.send(FinaliseMerge(job_id))
    except Exception:
        deps.jobs.release_finalise(job_id)
        raise
    log.info("merge_finalise_published", job_id=job_id)
    return True


def run_task(message: MergeTask, deps: MergeDeps) -> TypeResult | None:
    """merge-tasks -> rewrite every reference to a duplicate in one resource type."""
    job_id, resource_type = message.job_id, message.resource_type
    # Only this task's entry of the job: the whole document is large (every type) and slow to decode.
    job = deps.jobs.get(job_id, [*TASK_JOB_FIELDS, f"types.{resource_type}"])
    if job is None or resource_type not in (job.get("types") or {}):
        log.warning("merge_task_unknown", job_id=job_id, resource_type=resource_type)
        return None
    task = job["types"][resource_type]
    if job["status"] == JobStatus.RUNNING and task.get("status") in OPEN_TASK_STATES:
        # The resources the fan-out found, else (none given, or not usable) search.
        listed = list(message.resources) if message.resources is not None else None
        result = rewrite_type(deps, job, resource_type, task["params"], verify=False, listed=listed,
                              defer_journal=True)
        status = TaskStatus.FAILED if result.failures else TaskStatus.DONE
        remaining = deps.jobs.record_task(job_id, resource_type, {
            "status": status, "found": result.found, "rewritten": result.rewritten,
            "conflicts": result.conflicts, "failures": result.failures[:100], "finished_at": now_iso()},
            previous=task, journal_done=result.journal_done)
        log.info("merge_task_finished", job_id=job_id, resource_type=resource_type, status=status,
                 rewritten=result.rewritten, conflicts=result.conflicts, failures=len(result.failures))
        if result.failures:
            raise MergeTaskFailed(f"merge job {job_id}: {len(result.failures)} {resource_type} resource(s) "
                                  f"could not be rewritten (see the job document)")
    else:
        result = None
        # A redelivery of a done task: the first delivery may have crashed before publishing (the
        # claim decides whether anything is left to publish).
        remaining = job.get("remaining") if job["status"] in (JobStatus.RUNNING, JobStatus.FINALISING) else None
    if remaining is not None and remaining <= 0:
        publish_finalise_once(deps, job_id)   # re-checks the job, so exactly one caller publishes
    return result
