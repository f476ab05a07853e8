"""The FHIR ``Task`` an asynchronous ``Patient/$merge`` answers with: created in-progress when the merge
request is accepted, completed by the finaliser when the merge job is done (its status follows the
job's). The request's evidence names it (``fhir_task``), so the job, created from the request, does too."""

from __future__ import annotations

from shared.clock import now_iso
from shared.fhir.errors import FhirError, NotFound
from shared.logging import get_logger
from shared.ports.fhir import FhirPort

log = get_logger(__name__)
JOB_IDENTIFIER_SYSTEM = "urn:dedup:merge-job"
TASK_STATUS_OF_JOB = {"running": "in-progress", "finalising": "in-progress", "done": "completed",
                      "failed": "failed", "unmerged": "cancelled"}


def merge_task(task_id: str, source: str, target: str, job_id: str | None = None) -> dict:
    task = {
        "resourceType": "Task", "id": task_id, "status": "in-progress", "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}],
                 "text": "Patient merge"},
        "focus": {"reference": f"Patient/{target}"},
        "authoredOn": now_iso(), "lastModified": now_iso(),
        # Strings, not References: a rewrite of references to the merged source must not change what
        # the Task says was merged.
        "input": [{"type": {"text": "source-patient"}, "valueString": f"Patient/{source}"},
                  {"type": {"text": "target-patient"}, "valueString": f"Patient/{target}"}],
    }
    if job_id:
        task["identifier"] = [{"system": JOB_IDENTIFIER_SYSTEM, "value": job_id}]
    return task


def follow_job(fhir: FhirPort, job: dict) -> None:
    """Sets the job's Task (if it has one) to the status the job is in; output: the resulting patient."""
    evidence = job.get("evidence") or {}
    # A new request keeps its plan's evidence under "first" (``Group.open_request``).
    reference = evidence.get("fhir_task") or (evidence.get("first") or {}).get("fhir_task")
    status = TASK_STATUS_OF_JOB.get(str(job.get("status")))
    if not reference or not status:
        return
    task_id = reference.split("/", 1)[1]
    try:
        task = fhir.read("Task", task_id)
    except NotFound:
        log.warning("merge_task_missing", job_id=job.get("job_id"), task_id=task_id)
        return
    if task.get("status") == status:
        return
    task.update(status=status, lastModified=now_iso())
    if status == "completed":
        task["output"] = [{"type": {"text": "result"}, "valueReference": {"reference": f"Patient/{job['master']}"}}]
    try:
        fhir.update(task, if_match=(task.get("meta") or {}).get("versionId"))
    except FhirError as error:  # the merge is done whatever the Task says; a redelivery retries this
        log.warning("merge_task_not_updated", job_id=job.get("job_id"), task_id=task_id, status=error.status)
        raise
