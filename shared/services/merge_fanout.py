"""merge-requests -> claim the request, create (or find) the merge job, publish one task per type.

Safe to run twice: a replayed request finds the existing job and only re-publishes the tasks not
done yet (the claim answers the same request again while it runs).
"""

from __future__ import annotations

import json

from shared.domain.merge_job import OPEN_TASK_STATES, JobStatus, TaskStatus
from shared.fhir.compartment import reference_search_plan
from shared.logging import get_logger
from shared.messages import MergeRequested, MergeTask
from shared.services.merge_deps import MergeDeps
from shared.services.merge_worker import publish_finalise_once
from shared.services.rewrite import everything_referencing, supports_everything

log = get_logger(__name__)

# A task message carries the resources the fan-out found (so the worker does not read them again)
# while they fit in this many bytes of JSON; a type with more is searched by the worker instead.
MAX_TASK_RESOURCE_BYTES = 256 * 1024


def _claim(deps: MergeDeps, group: str, request_id: str) -> MergeRequested | None:
    return deps.index.claim_request(group, request_id)


def fan_out(message: MergeRequested, deps: MergeDeps) -> dict | None:
    """merge-requests -> claim the request, create (or find) the job, publish one task per type."""
    request_id, group = message.request_id, message.group
    job = deps.jobs.get(request_id)
    present: dict[str, dict[str, dict]] = {}
    if job is None:
        request = _claim(deps, group, request_id)
        if request is None:
            log.info("merge_request_not_claimable", request_id=request_id)
            return None
        capability = deps.fhir.capability()
        plan, skipped = reference_search_plan(capability)
        types = {t: {"status": TaskStatus.PENDING, "params": params} for t, params in plan.items()}
        if supports_everything(capability):
            # One $everything per duplicate says which types hold a reference now; only those get a
            # task. A reference created later in another type is caught by the finaliser's sweep.
            present = everything_referencing(deps, {"master": request.master,
                                                    "duplicates": list(request.duplicates)}, plan)
            for resource_type, task in types.items():
                if resource_type not in present:
                    task.update(status=TaskStatus.DONE, found=0, rewritten=0, conflicts=0, via="everything")
        types.update({t: {"status": TaskStatus.SKIPPED, "reason": why} for t, why in skipped.items() if "." not in t})
        job, created = deps.jobs.create({
            "job_id": request_id,
            "request_id": request_id,
            "group": group,
            "nik_token": request.nik_token,
            "master": request.master,
            "duplicates": list(request.duplicates),
            "reason": request.reason,
            "requested_by": request.requested_by,
            "evidence": dict(request.evidence),
            "types": types,
            "skipped_params": {k: v for k, v in skipped.items() if "." in k},
            "status": JobStatus.RUNNING,
        })
        log.info("merge_job_created" if created else "merge_job_found", job_id=request_id,
                 nik_token=job.get("nik_token"), tasks=len(plan))
    if job["status"] == JobStatus.FINALISING:
        publish_finalise_once(deps, request_id)   # a claim whose holder died before publishing
    if job["status"] != JobStatus.RUNNING:
        return job
    for resource_type, task in sorted(job["types"].items()):
        if task.get("status") in OPEN_TASK_STATES:
            listed = [resource for _, resource in sorted((present.get(resource_type) or {}).items())]
            # Patients (names, NIKs) never travel in messages; clinical resources do, like the
            # Healthcare API's own full-resource notifications, on the project's internal topics.
            # With them the worker writes these instead of searching.
            resources = tuple(listed) if listed and resource_type != "Patient" \
                and len(json.dumps(listed)) <= MAX_TASK_RESOURCE_BYTES else None
            deps.publisher.send(MergeTask(request_id, resource_type, resources))
    if not job.get("remaining"):
        publish_finalise_once(deps, request_id)
    return job
