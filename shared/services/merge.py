"""The merge pipeline: fan-out -> one worker task per resource type -> finaliser; unmerge; preview.

Every step is safe to run twice (Pub/Sub delivers at least once) and after a crash half-way:
- the fan-out finds the existing job and only re-publishes tasks not done yet;
- a worker re-searches (or, given the fan-out's resources, writes them with their old versions):
  whatever it already rewrote no longer matches (or answers 412 and is read again), so nothing is
  written twice;
- writes use ``ifMatch`` with the version read, and a 412 means "read again and rewrite", never
  "overwrite"; each rewritten resource is journaled (pending before the write, completed after) so
  an unmerge can restore it exactly;
- the task that completes the last type claims the finalise with an atomic create, so exactly one
  finalise message is published;
- the finaliser's patient updates and Provenance are idempotent (a second run finds nothing to do).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.adapters.merge_jobs import MergeJobs
from shared.adapters.pubsub import Publisher
from shared.config import Settings
from shared.domain.survivorship import (
    build_provenance,
    fill_master,
    link_duplicate,
    revert_duplicate,
    revert_master,
)
from shared.fhir.client import FhirClient, FhirError, PreconditionFailed, run_concurrently
from shared.fhir.compartment import reference_search_plan
from shared.fhir.references import references_any, rewrite_patient_references, without_meta
from shared.logging import get_logger
from shared.services.events import MalformedEvent
from shared.services.merge_requests import MergeRequests

log = get_logger(__name__)

# A search that keeps finding new references after this many rewrite rounds means someone keeps
# writing references to a duplicate; the task fails visibly instead of looping.
MAX_SEARCH_ROUNDS = 5
# How often one resource is re-read and rewritten after a 412 or a failed entry.
MAX_ENTRY_ATTEMPTS = 5
# Duplicates per search value, to keep URLs short.
SEARCH_CHUNK = 20
# A task message carries the resources the fan-out found (so the worker does not read them again)
# while they fit in this many bytes of JSON; a type with more is searched by the worker instead.
MAX_TASK_RESOURCE_BYTES = 256 * 1024
BATCHES_IN_FLIGHT = 4
# A worker reads only these fields of its job (plus its own type's entry).
TASK_JOB_FIELDS = ("job_id", "master", "duplicates", "status", "remaining", "finalise_published")
RESOURCE_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")


class MergeTaskFailed(RuntimeError):
    """A task or finaliser could not complete; the job records why (ids and statuses only)."""


@dataclass
class MergeDeps:
    settings: Settings
    fhir: FhirClient
    jobs: MergeJobs
    index: MergeRequests
    publisher: Publisher


@dataclass
class TypeResult:
    found: int = 0
    rewritten: int = 0
    conflicts: int = 0
    failures: list[dict] = field(default_factory=list)
    # Completed journal entries the caller commits itself (the worker, with the task's result).
    journal_done: list[dict] = field(default_factory=list)


def decode_pubsub_message(cloud_event_data: dict, required: tuple[str, ...]) -> dict:
    """The JSON body of a Pub/Sub CloudEvent (``data.message.data``, base64), with ``required`` keys;
    ``MalformedEvent`` for a message no redelivery can make valid."""
    try:
        body = json.loads(base64.b64decode(cloud_event_data["message"]["data"], validate=True))
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedEvent(f"undecodable-{type(error).__name__}") from None
    if not isinstance(body, dict) or any(not isinstance(body.get(key), str) for key in required):
        raise MalformedEvent("missing-" + "-".join(required))
    return body


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _version(resource: dict) -> str | None:
    return (resource.get("meta") or {}).get("versionId")


def _etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"')


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _put_entry(resource: dict, version: str | None) -> dict:
    request = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    if version is not None:
        request["ifMatch"] = f'W/"{version}"'
    return {"resource": resource, "request": request}


# --- searching ------------------------------------------------------------------------------------
def find_referencing(fhir: FhirClient, settings: Settings, resource_type: str, params: list[str],
                     patient_ids: list[str], exclude: set[str] = frozenset()) -> tuple[int, dict[str, dict]]:
    """(resources the searches returned, {id: resource} of those that really reference one of
    ``patient_ids``). One search per param for all ids at once, every page read before any write."""
    found: dict[str, dict] = {}
    for param in params:
        for chunk in _chunks(sorted(patient_ids), SEARCH_CHUNK):
            value = ",".join(f"Patient/{pid}" for pid in chunk)
            for resource in fhir.search(resource_type, [(param, value), ("_count", str(settings.fhir_page_size))]):
                if resource.get("resourceType") == resource_type:
                    found[resource["id"]] = resource
    # A server that ignored the parameter would return everything: only real references count.
    referencing = {rid: r for rid, r in found.items() if rid not in exclude and references_any(r, patient_ids)}
    return len(found), referencing


def supports_everything(capability: dict) -> bool:
    """Whether the server declares ``Patient/$everything`` (Google Healthcare API, HAPI do)."""
    for rest in capability.get("rest") or []:
        for resource in rest.get("resource") or []:
            if resource.get("type") == "Patient" and any(
                    (op.get("name") or "").lstrip("$") == "everything" for op in resource.get("operation") or []):
                return True
    return False


def everything_referencing(deps: MergeDeps, job: dict, resource_types: Iterable[str]) -> dict[str, dict[str, dict]]:
    """{type: {id: resource}} of ``resource_types`` that really reference a duplicate, from one
    ``$everything`` per duplicate instead of one search per type and parameter. The patient
    compartment is what the per-type searches cover too, so the two find the same resources."""
    wanted = set(resource_types)
    exclude = {job["master"], *job["duplicates"]}
    pages = run_concurrently(lambda pid: list(deps.fhir.everything(pid)), job["duplicates"],
                             deps.settings.fhir_concurrency)
    found: dict[str, dict[str, dict]] = {}
    for resource in (r for page in pages for r in page):
        rtype = resource.get("resourceType")
        if rtype in wanted and not (rtype == "Patient" and resource.get("id") in exclude) \
                and references_any(resource, job["duplicates"]):
            found.setdefault(rtype, {})[resource["id"]] = resource
    return found


# --- rewriting one type ----------------------------------------------------------------------------
def _journal_entry(job_id: str, resource: dict, changes, status: str) -> dict:
    return {
        "resource_type": resource["resourceType"],
        "id": resource["id"],
        "kind": "reference",
        "version_before": _version(resource),
        "version_after": None,
        "duplicate": changes[0].duplicate,
        "duplicates": sorted({c.duplicate for c in changes}),
        "paths": [c.as_dict()["path"] for c in changes],
        "status": status,
        "job_id": job_id,
    }


def write_rewrites(deps: MergeDeps, job: dict, resources: list[dict], *, defer_journal: bool = False) -> TypeResult:
    """Rewrites and writes ``resources`` (all referencing a duplicate) with batch bundles.
    ``defer_journal``: the completed journal entries are returned in ``journal_done`` instead of
    written (the pending entries are always written before the FHIR writes)."""
    job_id, master, duplicates = job["job_id"], job["master"], job["duplicates"]
    replacements = {d: master for d in duplicates}
    result = TypeResult()
    planned = {}
    for resource in resources:
        rewritten, changes = rewrite_patient_references(resource, replacements)
        planned[resource["id"]] = (resource, rewritten, changes)
    deps.jobs.journal_put(job_id, [_journal_entry(job_id, r, c, "pending") for r, _, c in planned.values()])

    completed: list[dict] = []
    retry: dict[str, int] = {}
    chunks = list(_chunks(list(planned), deps.settings.merge_batch_size))

    def send(chunk: list[str]):
        return chunk, deps.fhir.batch([_put_entry(planned[rid][1], _version(planned[rid][0])) for rid in chunk])

    # A few batches in flight at once: the server works on one while the next is on the wire.
    for chunk, outcomes in run_concurrently(send, chunks, min(BATCHES_IN_FLIGHT, deps.settings.fhir_concurrency)):
        for rid, outcome in zip(chunk, outcomes):
            if outcome.ok:
                after = _version(outcome.resource or {}) or _etag_version(outcome.etag)
                completed.append({"resource_type": planned[rid][0]["resourceType"], "id": rid,
                                  "version_after": after, "status": "done"})
            else:
                retry[rid] = outcome.status
    if defer_journal:
        result.journal_done = completed
    elif completed:
        deps.jobs.journal_put(job_id, completed, merge=True)
    result.rewritten += len(completed)

    # Failed entries one by one: re-read, and rewrite what is there now (never the stale copy).
    for rid, status in retry.items():
        resource_type = planned[rid][0]["resourceType"]
        if status == 412:
            result.conflicts += 1
        outcome_status = _retry_alone(deps, job, resource_type, rid, planned[rid][1])
        if outcome_status == "done":
            result.rewritten += 1
        elif outcome_status != "not-needed":
            result.failures.append({"resource_type": resource_type, "id": rid, "status": outcome_status})
    return result


def _retry_alone(deps: MergeDeps, job: dict, resource_type: str, rid: str, intended: dict) -> str:
    job_id, master, duplicates = job["job_id"], job["master"], job["duplicates"]
    status: str = "unknown"
    for _ in range(MAX_ENTRY_ATTEMPTS):
        try:
            current = deps.fhir.read(resource_type, rid)
        except FhirError as error:
            status = str(error.status)
            continue
        if not references_any(current, duplicates):
            # Either an earlier (replayed) write of ours landed, or someone else removed the reference.
            if without_meta(current) == without_meta(intended):
                deps.jobs.journal_put(job_id, [{"resource_type": resource_type, "id": rid,
                                                "version_after": _version(current), "status": "done"}], merge=True)
                return "done"
            deps.jobs.journal_put(job_id, [{"resource_type": resource_type, "id": rid, "status": "not-needed"}],
                                  merge=True)
            return "not-needed"
        rewritten, changes = rewrite_patient_references(current, {d: master for d in duplicates})
        deps.jobs.journal_put(job_id, [_journal_entry(job_id, current, changes, "pending")])
        intended = rewritten
        try:
            written = deps.fhir.update(rewritten, if_match=_version(current))
        except PreconditionFailed:
            status = "412"
            continue
        except FhirError as error:
            status = str(error.status)
            continue
        deps.jobs.journal_put(job_id, [{"resource_type": resource_type, "id": rid,
                                        "version_after": _version(written), "status": "done"}], merge=True)
        return "done"
    return status


def rewrite_type(deps: MergeDeps, job: dict, resource_type: str, params: list[str], *,
                 verify: bool = True, listed: list[dict] | None = None, defer_journal: bool = False) -> TypeResult:
    """Search, rewrite, write, and search again until a search finds nothing left to rewrite.

    ``verify=False`` (the worker) stops after a round whose writes all succeeded: the finaliser's
    sweep searches every type again anyway, so resources created meanwhile are caught there.
    ``listed``: the resources the fan-out's ``$everything`` found referencing a duplicate; the
    first round writes those instead of searching. They may be stale by now: the writes carry
    their versions in ``ifMatch``, and a 412 reads the resource again (``_retry_alone``)."""
    exclude = {job["master"], *job["duplicates"]} if resource_type == "Patient" else set()
    total = TypeResult()
    for _ in range(MAX_SEARCH_ROUNDS):
        if listed is not None:
            found = len(listed)
            referencing = {r["id"]: r for r in listed
                           if r["id"] not in exclude and references_any(r, job["duplicates"])}
            listed = None
        else:
            found, referencing = find_referencing(deps.fhir, deps.settings, resource_type, params,
                                                  job["duplicates"], exclude)
        total.found += found
        if not referencing:
            return total
        result = write_rewrites(deps, job, list(referencing.values()), defer_journal=defer_journal)
        total.journal_done += result.journal_done
        total.rewritten += result.rewritten
        total.conflicts += result.conflicts
        total.failures += result.failures
        if result.failures or not verify:
            return total
    total.failures.append({"resource_type": resource_type, "id": None, "status": "still-referenced"})
    return total


# --- fan-out -------------------------------------------------------------------------------------
def _publish_finalise_once(deps: MergeDeps, job_id: str) -> bool:
    if not deps.jobs.claim_finalise(job_id):
        return False
    try:
        deps.publisher.publish(deps.settings.topic_merge_finalise, {"job_id": job_id})
    except Exception:
        deps.jobs.release_finalise(job_id)
        raise
    log.info("merge_finalise_published", job_id=job_id)
    return True


def fan_out(message: dict, deps: MergeDeps) -> dict | None:
    """merge-requests -> claim the request, create (or find) the job, publish one task per type."""
    request_id = message["request_id"]
    group = message.get("group") or f"nik_index/{message['nik_token']}"
    job = deps.jobs.get(request_id)
    present: dict[str, dict[str, dict]] = {}
    if job is None:
        request = deps.index.claim_request(group, request_id)
        if request is None:
            log.info("merge_request_not_claimable", request_id=request_id)
            return None
        capability = deps.fhir.capability()
        plan, skipped = reference_search_plan(capability)
        types = {t: {"status": "pending", "params": params} for t, params in plan.items()}
        if supports_everything(capability):
            # One $everything per duplicate says which types hold a reference now; only those get a
            # task. A reference created later in another type is caught by the finaliser's sweep.
            present = everything_referencing(deps, {"master": request["master"],
                                                    "duplicates": list(request["duplicates"])}, plan)
            for resource_type, task in types.items():
                if resource_type not in present:
                    task.update(status="done", found=0, rewritten=0, conflicts=0, via="everything")
        types.update({t: {"status": "skipped", "reason": why} for t, why in skipped.items() if "." not in t})
        job, created = deps.jobs.create({
            "job_id": request_id,
            "request_id": request_id,
            "group": group,
            "nik_token": request.get("nik_token"),
            "master": request["master"],
            "duplicates": list(request["duplicates"]),
            "reason": request.get("reason"),
            "requested_by": request.get("requested_by"),
            "evidence": request.get("evidence") or {},
            "types": types,
            "skipped_params": {k: v for k, v in skipped.items() if "." in k},
            "status": "running",
        })
        log.info("merge_job_created" if created else "merge_job_found", job_id=request_id,
                 nik_token=job.get("nik_token"), tasks=len(plan))
    if job["status"] != "running":
        return job
    for resource_type, task in sorted(job["types"].items()):
        if task.get("status") in ("pending", "failed"):
            message = {"job_id": request_id, "resource_type": resource_type}
            listed = [resource for _, resource in sorted((present.get(resource_type) or {}).items())]
            # Patients (names, NIKs) never travel in messages; clinical resources do, like the
            # Healthcare API's own full-resource notifications, on the project's internal topics.
            if listed and resource_type != "Patient" and len(json.dumps(listed)) <= MAX_TASK_RESOURCE_BYTES:
                message["resources"] = listed   # the worker writes these instead of searching
            deps.publisher.publish(deps.settings.topic_merge_tasks, message)
    if not job.get("remaining"):
        _publish_finalise_once(deps, request_id)
    return job


# --- worker ----------------------------------------------------------------------------------------
def run_task(message: dict, deps: MergeDeps) -> TypeResult | None:
    """merge-tasks -> rewrite every reference to a duplicate in one resource type."""
    job_id, resource_type = message["job_id"], message["resource_type"]
    # Only this task's entry of the job: the whole document is large (every type) and slow to decode.
    job = deps.jobs.get(job_id, [*TASK_JOB_FIELDS, f"types.{resource_type}"]) \
        if RESOURCE_TYPE_NAME.fullmatch(str(resource_type)) else None
    if job is None or resource_type not in (job.get("types") or {}):
        log.warning("merge_task_unknown", job_id=job_id, resource_type=resource_type)
        return None
    task = job["types"][resource_type]
    if job["status"] == "running" and task.get("status") in ("pending", "failed"):
        listed = message.get("resources")
        if not (isinstance(listed, list) and all(
                isinstance(r, dict) and r.get("resourceType") == resource_type and isinstance(r.get("id"), str)
                for r in listed)):
            listed = None   # none given (or not usable): search
        result = rewrite_type(deps, job, resource_type, task["params"], verify=False, listed=listed,
                              defer_journal=True)
        status = "failed" if result.failures else "done"
        remaining = deps.jobs.record_task(job_id, resource_type, {
            "status": status, "found": result.found, "rewritten": result.rewritten,
            "conflicts": result.conflicts, "failures": result.failures[:100], "finished_at": _now()},
            previous=task, journal_done=result.journal_done)
        log.info("merge_task_finished", job_id=job_id, resource_type=resource_type, status=status,
                 rewritten=result.rewritten, conflicts=result.conflicts, failures=len(result.failures))
        if result.failures:
            raise MergeTaskFailed(f"merge job {job_id}: {len(result.failures)} {resource_type} resource(s) "
                                  f"could not be rewritten (see the job document)")
    else:
        result = None
        # A redelivery of a done task: the first delivery may have crashed before publishing.
        remaining = job.get("remaining") if job["status"] == "running" and not job.get("finalise_published") \
            else None
    if remaining is not None and remaining <= 0:
        _publish_finalise_once(deps, job_id)   # re-checks the job, so exactly one caller publishes
    return result


# --- finaliser -------------------------------------------------------------------------------------
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
            "version_before": _version(current[pid]), "version_after": None,
            "added": added if pid == master_id else {}, "status": "pending", "job_id": job_id,
        } for pid in changed])
        outcomes = deps.fhir.batch([_put_entry(wanted[pid], _version(current[pid])) for pid in changed])
        done = [{"resource_type": "Patient", "id": pid, "status": "done",
                 "version_after": _version(o.resource or {}) or _etag_version(o.etag)}
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


def _find_provenance(deps: MergeDeps, job: dict, activity: str) -> dict | None:
    """The job's Provenance for ``activity`` if a crashed earlier run already wrote it (one search
    instead of a second Provenance)."""
    marker = f"(merge job {job['job_id']})"
    for provenance in deps.fhir.search("Provenance", [("target", f"Patient/{job['master']}")]):
        codes = {c.get("code") for c in (provenance.get("activity") or {}).get("coding", [])}
        if activity in codes and any(marker in (r.get("text") or "") for r in provenance.get("reason", [])):
            return provenance
    return None


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


def finalise(message: dict, deps: MergeDeps) -> dict | None:
    """merge-finalise -> sweep every type again, link the patients, Provenance, index."""
    job_id = message["job_id"]
    job = deps.jobs.get(job_id)
    if job is None or job["status"] in ("done", "unmerged"):
        return job
    pending = [t for t, task in job["types"].items() if task.get("status") not in ("done", "skipped")]
    if pending:
        raise MergeTaskFailed(f"merge job {job_id}: finalise before {len(pending)} task(s) are done")

    # Resources created or changed while the tasks ran are caught here (and journaled).
    swept_types = [(t, task["params"]) for t, task in sorted(job["types"].items()) if task.get("status") == "done"]
    if supports_everything(deps.fhir.capability()):
        results = _sweep_everything(deps, job, [t for t, _ in swept_types])
    else:
        results = run_concurrently(lambda item: (item[0], rewrite_type(deps, job, item[0], item[1])),
                                   swept_types, deps.settings.fhir_concurrency)
    failures = [f for _, r in results for f in r.failures]
    swept = {t: r.rewritten for t, r in results if r.rewritten}
    if failures:
        deps.jobs.update(job_id, status="finalising", finalise_failures=failures[:100])
        raise MergeTaskFailed(f"merge job {job_id}: {len(failures)} resource(s) still reference a duplicate")
    deps.jobs.update(job_id, verified_at=_now(), swept=swept)

    _merge_patients(deps, job)

    if not job.get("provenance_id"):
        provenance = _find_provenance(deps, job, "merge")
        if provenance is None:
            before = {e["id"]: e["version_before"] for e in deps.jobs.journal_entries(job_id, kind="patient")}
            master = deps.fhir.read("Patient", job["master"])
            duplicate_versions = {d: before.get(d) or _version(deps.fhir.read("Patient", d))
                                  for d in job["duplicates"]}
            provenance = deps.fhir.create(build_provenance(
                master_id=job["master"], master_version=_version(master), duplicate_versions=duplicate_versions,
                activity="merge", reason=job.get("reason") or "merge", requested_by=job.get("requested_by"),
                evidence=job.get("evidence"), job_id=job_id))
        deps.jobs.update(job_id, provenance_id=provenance["id"])

    follow_up = deps.index.complete_request(job["group"], job["request_id"], job["master"], job["duplicates"])
    if follow_up:
        deps.publisher.publish(deps.settings.topic_merge_requests, follow_up)
        deps.index.mark_published(job["group"], follow_up["request_id"])
    deps.jobs.update(job_id, status="done", completed_at=_now())
    log.info("merge_done", job_id=job_id, nik_token=job.get("nik_token"), duplicates=len(job["duplicates"]))
    return deps.jobs.get(job_id)


# --- unmerge ---------------------------------------------------------------------------------------
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
    return _version(current) if without_meta(intended) == without_meta(current) else None


def unmerge(job_id: str, deps: MergeDeps) -> UnmergeReport:
    job = deps.jobs.get(job_id)
    if job is None:
        raise KeyError(f"merge job {job_id} not found")
    report = UnmergeReport(job_id)
    if job["status"] == "unmerged":
        report.provenance_id = job.get("unmerge_provenance_id")
        return report
    entries = [e for e in deps.jobs.journal_entries(job_id) if e.get("status") in ("done", "pending")]
    references = [e for e in entries if e.get("kind") != "patient"]
    patients = [e for e in entries if e.get("kind") == "patient"]

    def plan_restore(entry: dict):
        current = deps.fhir.read(entry["resource_type"], entry["id"])
        after = entry.get("version_after") or _resolve_version_after(deps, job, entry, current)
        if after is None or _version(current) != after:
            return entry, None, current
        before = deps.fhir.vread(entry["resource_type"], entry["id"], entry["version_before"])
        return entry, before, current

    planned = run_concurrently(plan_restore, references, deps.settings.fhir_concurrency)
    writable = []
    for entry, before, current in planned:
        if before is None:
            report.conflicts.append({"resource_type": entry["resource_type"], "id": entry["id"],
                                     "reason": "changed-since-merge"})
        else:
            restored = without_meta(before)
            writable.append((entry, _put_entry(restored, _version(current))))
    for chunk in _chunks(writable, deps.settings.merge_batch_size):
        outcomes = deps.fhir.batch([put for _, put in chunk])
        for (entry, _), outcome in zip(chunk, outcomes):
            if outcome.ok:
                report.restored += 1
            else:
                report.conflicts.append({"resource_type": entry["resource_type"], "id": entry["id"],
                                         "reason": f"status-{outcome.status}"})

    # Before the patients come back to life (their change events reach matching): remember that a
    # human undid this merge, or the automation would merge them straight back.
    deps.index.record_unmerge(job["group"], job["master"], job["duplicates"])

    # Patients: the pre-merge version when untouched since, else take out exactly what was added.
    puts = []
    for entry in patients:
        current = deps.fhir.read("Patient", entry["id"])
        before = deps.fhir.vread("Patient", entry["id"], entry["version_before"])
        if entry.get("version_after") and _version(current) == entry["version_after"]:
            wanted = without_meta(before)
        elif entry["role"] == "master":
            wanted = revert_master(current, entry.get("added") or {})
        else:
            wanted = revert_duplicate(current, before, job["master"])
        puts.append((entry, _put_entry(wanted, _version(current))))
    outcomes = deps.fhir.batch([put for _, put in puts]) if puts else []
    for (entry, _), outcome in zip(puts, outcomes):
        if outcome.ok:
            report.patients += 1
        else:
            report.conflicts.append({"resource_type": "Patient", "id": entry["id"],
                                     "reason": f"status-{outcome.status}"})

    provenance = _find_provenance(deps, job, "unmerge")
    if provenance is None:
        master = deps.fhir.read("Patient", job["master"])
        provenance = deps.fhir.create(build_provenance(
            master_id=job["master"], master_version=_version(master),
            duplicate_versions={d: _version(deps.fhir.read("Patient", d)) for d in job["duplicates"]},
            activity="unmerge", reason="unmerge", requested_by=None, evidence=None, job_id=job_id))
    report.provenance_id = provenance["id"]
    deps.jobs.update(job_id, status="unmerged", unmerged_at=_now(), unmerge_provenance_id=provenance["id"],
                     unmerge_conflicts=report.conflicts[:100])
    log.info("merge_unmerged", job_id=job_id, restored=report.restored, conflicts=len(report.conflicts))
    return report


# --- preview ---------------------------------------------------------------------------------------
def preview(master: str, duplicates: list[str], deps: MergeDeps) -> dict[str, int]:
    """{resource type: resources a merge would rewrite}, without writing anything."""
    plan, _ = reference_search_plan(deps.fhir.capability())
    exclude = {master, *duplicates}

    def count(item):
        resource_type, params = item
        _, referencing = find_referencing(deps.fhir, deps.settings, resource_type, params, duplicates,
                                          exclude if resource_type == "Patient" else set())
        return resource_type, len(referencing)

    counts = run_concurrently(count, sorted(plan.items()), deps.settings.fhir_concurrency)
    return {t: n for t, n in counts if n}
