"""The district report: what the service has seen and done, from the index and the merge jobs alone
(no FHIR reads). Counts only: no patient data. Sources come from the index members' ``source`` (the
legacy system in ``meta.source``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from shared.domain.group import GROUP_COLLECTIONS, NIK_GROUPS
from shared.domain.review import ReviewStatus
from shared.ports.index import GroupRepository, PatientKeyRepository, ReviewItemRepository
from shared.ports.merge_jobs import MergeJobsRepository


@dataclass
class ReportSources:
    """The repositories the report reads (the report's read model)."""
    keys: PatientKeyRepository
    groups: GroupRepository
    reviews: ReviewItemRepository
    jobs: MergeJobsRepository


def build_report(sources: ReportSources) -> dict:
    niks = 0
    niks_with_duplicates = 0
    members_by_status: Counter = Counter()
    by_source: dict[str, Counter] = defaultdict(Counter)
    for group in sources.groups.all(NIK_GROUPS):
        niks += 1
        live_or_merged = [m for m in group.members.values() if m.get("status") != "deleted"]
        if len(live_or_merged) > 1:
            niks_with_duplicates += 1
        for member in group.members.values():
            status = member.get("status", "active")
            members_by_status[status] += 1
            source = member.get("source") or "unknown"
            by_source[source]["patients"] += 1
            if status in ("merged", "duplicate"):
                by_source[source]["merged_away"] += 1
            if status == "review":
                by_source[source]["in_review"] += 1

    merges: Counter = Counter()
    references_rewritten = 0
    resources_by_type: Counter = Counter()
    for job in sources.jobs.all():
        merges[job.get("status", "unknown")] += 1
        for resource_type, task in (job.get("types") or {}).items():
            rewritten = int(task.get("rewritten") or 0)
            references_rewritten += rewritten
            if rewritten:
                resources_by_type[resource_type] += rewritten

    reviews: Counter = Counter()
    reviews_decided: Counter = Counter()
    for item in sources.reviews.all():
        if item.status == ReviewStatus.PENDING:
            reviews[item.reason] += 1
        else:
            reviews_decided[str(item.status)] += 1

    return {
        "patients_seen": sources.keys.count(),
        "niks_indexed": niks,
        "niks_with_duplicates": niks_with_duplicates,
        "index_members_by_status": dict(members_by_status),
        "merges": {"done": merges.get("done", 0),
                   "in_progress": merges.get("running", 0) + merges.get("finalising", 0),
                   "failed": merges.get("failed", 0), "unmerged": merges.get("unmerged", 0)},
        "resources_rewritten": references_rewritten,
        "resources_rewritten_by_type": dict(sorted(resources_by_type.items())),
        "review_pending_by_reason": dict(sorted(reviews.items())),
        "review_decided": dict(reviews_decided),
        "by_source": {source: dict(counts) for source, counts in sorted(by_source.items())},
    }


def work_in_progress(sources: ReportSources) -> int:
    """Merge requests not yet finished plus merge jobs still running: 0 when the pipeline has nothing
    left to do (what `wait until quiet` checks)."""
    jobs = sum(1 for job in sources.jobs.all() if job.get("status") in ("running", "finalising"))
    requests = sum(1 for collection in GROUP_COLLECTIONS for group in sources.groups.all(collection)
                   if group.request and group.request.in_progress)
    return jobs + requests
