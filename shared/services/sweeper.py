"""The sweeper (``ops-sweep``, fired by Cloud Scheduler): merge work with no progress for
``Settings.stuck_after_seconds`` is continued or failed.

What it finds (``find_stuck``; a query each, no scan): group requests ``open`` or ``running``
(``GroupRepository.with_request_status``) and merge jobs ``running`` or ``finalising``
(``MergeJobsRepository.with_status``), older than the age. What it does with each:

- an open request (unpublished, or published and never claimed), or a running one whose job was never
  created (the fan-out died between claim and create): its ``MergeRequested`` again;
- a running job: its open tasks again, or its finalise when no task is open;
- a finalising job (the finalise claim was taken and its message or run lost): its finalise again;
- a request whose job failed or was unmerged: released; one whose job is done: completed;
- anything republished ``Settings.stuck_republish_limit`` times already: failed (the job rolled back
  and its request released, see ``merge_failure``), logged as ``merge_job_failed`` /
  ``merge_request_released`` for the alert.

Every step is idempotent (the pipeline's handlers are), so a sweep running twice, or racing a slow
worker, republishes at worst a message that is then found done.

Given the review items and the district's upkeep marks, each sweep then runs one slice of the one-time
pass that makes groups track review items proposed before they tracked them (``review_tracking``), until
the mark says it is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.clock import now_iso
from shared.domain.group import GROUP_COLLECTIONS
from shared.domain.merge_job import OPEN_TASK_STATES, JobStatus
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.logging import get_logger
from shared.messages import FinaliseMerge, MergeTask
from shared.ports.index import GroupRepository, ReviewItemRepository
from shared.ports.merge_jobs import MergeJobsRepository
from shared.ports.upkeep import UpkeepMarks
from shared.services.merge_deps import MergeDeps
from shared.services.merge_failure import fail_job, release_request
from shared.services.merge_requests import request_message
from shared.services.review_tracking import track_pending_once

log = get_logger(__name__)

ACTIVE_JOB_STATES = (JobStatus.RUNNING, JobStatus.FINALISING)
IN_PROGRESS_REQUEST_STATES = (RequestStatus.OPEN, RequestStatus.RUNNING)


@dataclass(frozen=True)
class StuckItem:
    """One piece of stuck work: a job (``job`` set) or a request without a running job."""
    kind: str                  # "job" | "request"
    id: str                    # job id = request id
    status: str
    age_seconds: float
    group: str | None
    sweeps: int
    job: dict | None = None
    request: MergeRequest | None = None


@dataclass
class SweepReport:
    stuck: int = 0
    republished: list[str] = field(default_factory=list)   # "request:<id>", "tasks:<id>:<n>", "finalise:<id>"
    completed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reviews_tracked: int = 0   # pending review items handed to their groups by this sweep's tracking slice


def _age(since: str | None, now: datetime) -> float:
    if not since:
        return (now - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()   # never moved: as old as can be
    moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    return (now - (moment if moment.tzinfo else moment.replace(tzinfo=UTC))).total_seconds()


def find_stuck(jobs: MergeJobsRepository, groups: GroupRepository, older_than_seconds: float,
               now: datetime | None = None) -> list[StuckItem]:
    """Jobs running or finalising, and requests open or running without a running job, that have not
    moved for ``older_than_seconds``; oldest first."""
    now = now or datetime.now(UTC)
    active = {job["job_id"]: job for job in jobs.with_status(ACTIVE_JOB_STATES)}
    items = [StuckItem("job", job_id, str(job["status"]), _age(job.get("updated_at"), now), job.get("group"),
                       int(job.get("sweeps") or 0), job=job)
             for job_id, job in active.items()]
    for collection in GROUP_COLLECTIONS:
        for group in groups.with_request_status(collection, IN_PROGRESS_REQUEST_STATES):
            request = group.request
            if request is None or request.id in active:
                continue
            items.append(StuckItem("request", request.id, str(request.status), _age(request.last_progress, now),
                                   group.id, int(request.sweeps or 0), request=request))
    return sorted((i for i in items if i.age_seconds >= older_than_seconds), key=lambda i: -i.age_seconds)


def _note_request_swept(groups: GroupRepository, group_id: str, request_id: str) -> None:
    def note(tx) -> None:
        request = tx.group.request
        if request and request.id == request_id and request.in_progress:
            request.note_sweep(now_iso())
    groups.transact(group_id, note)


def _sweep_request(deps: MergeDeps, groups: GroupRepository, item: StuckItem, report: SweepReport) -> None:
    request, group_id = item.request, item.group
    job = deps.jobs.get(request.id)
    status = job and job.get("status")
    if status == JobStatus.DONE:
        follow_up = deps.index.complete_request(group_id, request.id, job["master"], job["duplicates"])
        if follow_up:
            deps.publisher.send(follow_up)
            deps.index.mark_published(group_id, follow_up.request_id)
        report.completed.append(request.id)
    elif status in (JobStatus.FAILED, JobStatus.UNMERGED) or item.sweeps >= deps.settings.stuck_republish_limit:
        reason = f"job-{status}" if status else f"stuck-{request.status}"
        release_request(deps, group_id, request.id, reason)
        report.released.append(request.id)
        log.error("merge_request_released", request_id=request.id, group=group_id, reason=reason)
    else:
        # Open (never claimed) or running without a job: the fan-out claims it (again) and creates it.
        deps.publisher.send(request_message(group_id, request))
        if request.status == RequestStatus.OPEN and not request.published:
            deps.index.mark_published(group_id, request.id)
        _note_request_swept(groups, group_id, request.id)
        report.republished.append(f"request:{request.id}")


def _sweep_job(deps: MergeDeps, item: StuckItem, report: SweepReport) -> None:
    job = item.job
    job_id = job["job_id"]
    if item.sweeps >= deps.settings.stuck_republish_limit:
        fail_job(deps, job, f"stuck-{job['status']}")
        report.failed.append(job_id)
        return
    open_tasks = sorted(t for t, task in (job.get("types") or {}).items() if task.get("status") in OPEN_TASK_STATES)
    if job["status"] == JobStatus.RUNNING and open_tasks:
        for resource_type in open_tasks:
            deps.publisher.send(MergeTask(job_id, resource_type))
        report.republished.append(f"tasks:{job_id}:{len(open_tasks)}")
    else:
        # Every task closed (the last one's finalise claim lost) or finalising: the finaliser checks
        # the tasks itself and is idempotent.
        deps.publisher.send(FinaliseMerge(job_id))
        report.republished.append(f"finalise:{job_id}")
    deps.jobs.update(job_id, sweeps=item.sweeps + 1, swept_at=now_iso())


def sweep(deps: MergeDeps, groups: GroupRepository, older_than_seconds: float | None = None,
          now: datetime | None = None, *, reviews: ReviewItemRepository | None = None,
          marks: UpkeepMarks | None = None) -> SweepReport:
    """Continues or fails every piece of stuck work, then (given ``reviews`` and ``marks``) runs a slice
    of the one-time review tracking (see the module's docstring)."""
    age = deps.settings.stuck_after_seconds if older_than_seconds is None else older_than_seconds
    report = SweepReport()
    for item in find_stuck(deps.jobs, groups, age, now):
        report.stuck += 1
        if item.kind == "job":
            _sweep_job(deps, item, report)
        else:
            _sweep_request(deps, groups, item, report)
    if reviews is not None and marks is not None:
        tracking = track_pending_once(reviews, groups, marks)
        report.reviews_tracked = tracking.tracked if tracking else 0
    log.info("sweep_done", stuck=report.stuck, republished=len(report.republished), completed=len(report.completed),
             released=len(report.released), failed=len(report.failed), reviews_tracked=report.reviews_tracked)
    return report
