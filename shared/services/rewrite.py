"""Finding and rewriting the references to a merge's duplicates, one resource type at a time: what
the merge worker, the finaliser's sweep and ``reconcile`` share.

Writes use ``ifMatch`` with the version read, and a 412 means "read again and rewrite", never
"overwrite"; each rewritten resource is journaled (pending before the write, completed after) so
an unmerge can restore it exactly. Whatever a replay already rewrote no longer matches a search
(or answers 412 and is read again), so nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.fhir.errors import FhirError, PreconditionFailed
from shared.fhir.references import references_any, rewrite_patient_references, without_meta
from shared.services.merge_deps import MergeDeps

# A search that keeps finding new references after this many rewrite rounds means someone keeps
# writing references to a duplicate; the task fails visibly instead of looping.
MAX_SEARCH_ROUNDS = 5
# How often one resource is re-read and rewritten after a 412 or a failed entry.
MAX_ENTRY_ATTEMPTS = 5
# Duplicates per search value, to keep URLs short.
SEARCH_CHUNK = 20
# Batch bundles of one type written at once.
BATCHES_IN_FLIGHT = 4
# A journal entry whose resource had no duplicate left when the worker retried it: its own write
# landed unseen, or someone else moved the reference (the unmerge reports it if it is on the master).
NOT_NEEDED = "not-needed"


@dataclass
class TypeResult:
    found: int = 0
    rewritten: int = 0
    conflicts: int = 0
    failures: list[dict] = field(default_factory=list)
    # Completed journal entries the caller commits itself (the worker, with the task's result).
    journal_done: list[dict] = field(default_factory=list)


def version_of(resource: dict) -> str | None:
    return (resource.get("meta") or {}).get("versionId")


def etag_version(etag: str | None) -> str | None:
    if not etag:
        return None
    return etag.removeprefix("W/").strip('"')


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def put_entry(resource: dict, version: str | None) -> dict:
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
        for chunk in chunks(sorted(patient_ids), SEARCH_CHUNK):
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
        "version_before": version_of(resource),
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
    batches = list(chunks(list(planned), deps.settings.merge_batch_size))

    def send(chunk: list[str]):
        return chunk, deps.fhir.batch([put_entry(planned[rid][1], version_of(planned[rid][0])) for rid in chunk])

    # A few batches in flight at once: the server works on one while the next is on the wire.
    for chunk, outcomes in run_concurrently(send, batches, min(BATCHES_IN_FLIGHT, deps.settings.fhir_concurrency)):
        for rid, outcome in zip(chunk, outcomes):
            if outcome.ok:
                after = version_of(outcome.resource or {}) or etag_version(outcome.etag)
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
        elif outcome_status != NOT_NEEDED:
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
                                                "version_after": version_of(current), "status": "done"}], merge=True)
                return "done"
            deps.jobs.journal_put(job_id, [{"resource_type": resource_type, "id": rid, "status": NOT_NEEDED}],
                                  merge=True)
            return NOT_NEEDED
        rewritten, changes = rewrite_patient_references(current, {d: master for d in duplicates})
        deps.jobs.journal_put(job_id, [_journal_entry(job_id, current, changes, "pending")])
        intended = rewritten
        try:
            written = deps.fhir.update(rewritten, if_match=version_of(current))
        except PreconditionFailed:
            status = "412"
            continue
        except FhirError as error:
            status = str(error.status)
            continue
        deps.jobs.journal_put(job_id, [{"resource_type": resource_type, "id": rid,
                                        "version_after": version_of(written), "status": "done"}], merge=True)
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


