"""Late references: resources that point at a duplicate after its merge finished.

A legacy system that still uses its own (now inactive) patient id keeps sending data that references
it; a bulk load may deliver clinical resources after their patient was merged. The merge's own sweep
only catches what arrived before it finished. ``reconcile`` looks for every finished merge's
duplicates at once, by type, and rewrites what it finds to the master with the merge's own journaled
writes (so an unmerge of that job also restores these). Ops runs it after bulk loads and on a
schedule (`python -m ops reconcile`); the main job runs it before checking its invariants.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from shared.concurrency import run_concurrently
from shared.fhir.compartment import AUDIT_TYPES, reference_search_plan
from shared.fhir.references import patient_references, references_any
from shared.logging import get_logger
from shared.services.merge_deps import MergeDeps
from shared.services.rewrite import find_referencing, write_rewrites

log = get_logger(__name__)


@dataclass
class ReconcileReport:
    merges: int = 0
    duplicates: int = 0
    rewritten: Counter = field(default_factory=Counter)  # resource type -> resources rewritten
    failures: list[dict] = field(default_factory=list)


def _every_type(capability: dict) -> list[str]:
    """Every resource type the server holds, but patients and audit records."""
    return sorted({r["type"] for rest in capability.get("rest") or [] for r in rest.get("resource") or []
                   if r.get("type")} - AUDIT_TYPES - {"Patient"})


def reconcile(deps: MergeDeps, *, full: bool = False) -> ReconcileReport:
    """``full=False`` searches the Patient-compartment parameters (cheap: one search per parameter and
    chunk of duplicates). ``full=True`` also reads every resource of every type, for references that no
    search parameter reaches (an extension, a note's author): a batch job, like backfill."""
    report = ReconcileReport()
    owner: dict[str, dict] = {}  # duplicate id -> its finished merge job
    jobs_by_id: dict[str, dict] = {}
    for job in deps.jobs.finished():
        report.merges += 1
        jobs_by_id[job["job_id"]] = job
        for duplicate in job["duplicates"]:
            owner[duplicate] = job
    report.duplicates = len(owner)
    if not owner:
        return report
    plan, _ = reference_search_plan(deps.fhir.capability())
    duplicates = sorted(owner)

    def find(item):
        resource_type, params = item
        if full:
            params = {"_count": str(deps.settings.fhir_page_size)}
            if deps.settings.scan_sort:
                params["_sort"] = deps.settings.scan_sort
            return {r["id"]: r for r in deps.fhir.search(resource_type, params)
                    if r.get("resourceType") == resource_type and references_any(r, owner)}
        # Masters link to their duplicates (and duplicates to masters) on purpose.
        linked = set(owner) | {job["master"] for job in owner.values()} if resource_type == "Patient" else set()
        return find_referencing(deps.fhir, deps.settings, resource_type, params, duplicates, linked)[1]

    items = [(t, []) for t in _every_type(deps.fhir.capability())] if full else sorted(plan.items())
    for (resource_type, _), referencing in zip(items, run_concurrently(find, items, deps.settings.fhir_concurrency)):
        by_job: dict[str, list[dict]] = defaultdict(list)
        for resource in referencing.values():
            # A resource pointing at duplicates of two merges is written once per merge; the second
            # write meets a 412 and is redone on the fresh copy.
            for job_id in sorted({owner[pid]["job_id"] for _, pid in patient_references(resource) if pid in owner}):
                by_job[job_id].append(resource)
        for job_id, resources in by_job.items():
            result = write_rewrites(deps, jobs_by_id[job_id], resources)
            report.rewritten[resource_type] += result.rewritten
            report.failures.extend(result.failures)
    log.info("reconcile_done", merges=report.merges, duplicates=report.duplicates,
             rewritten=sum(report.rewritten.values()), failures=len(report.failures))
    return report
