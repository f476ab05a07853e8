"""The district report: what the service has seen and done, from Firestore alone (no FHIR reads).

Counts only: no patient data. Sources come from the index members' ``source`` (the legacy system in
``meta.source``).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from google.cloud import firestore

from shared.config import Settings


def build_report(db: firestore.Client, settings: Settings) -> dict:
    col = lambda name: db.collection(settings.collection(name))  # noqa: E731

    patients_seen = sum(1 for _ in col("patient_keys").select([]).stream())

    niks = 0
    niks_with_duplicates = 0
    members_by_status: Counter = Counter()
    by_source: dict[str, Counter] = defaultdict(Counter)
    for snap in col("nik_index").stream():
        niks += 1
        members = (snap.to_dict() or {}).get("members") or {}
        live_or_merged = [m for m in members.values() if m.get("status") != "deleted"]
        if len(live_or_merged) > 1:
            niks_with_duplicates += 1
        for member in members.values():
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
    for snap in col("merge_jobs").stream():
        job = snap.to_dict() or {}
        merges[job.get("status", "unknown")] += 1
        for resource_type, task in (job.get("types") or {}).items():
            rewritten = int(task.get("rewritten") or 0)
            references_rewritten += rewritten
            if rewritten:
                resources_by_type[resource_type] += rewritten

    reviews: Counter = Counter()
    reviews_decided: Counter = Counter()
    for snap in col("review_items").stream():
        item = snap.to_dict() or {}
        if item.get("status") == "pending":
            reviews[item.get("reason", "unknown")] += 1
        else:
            reviews_decided[item.get("status", "unknown")] += 1

    return {
        "patients_seen": patients_seen,
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


def work_in_progress(db: firestore.Client, settings: Settings) -> int:
    """Merge requests not yet finished plus merge jobs still running: 0 when the pipeline has nothing
    left to do (what `wait until quiet` checks)."""
    jobs = sum(1 for snap in db.collection(settings.collection("merge_jobs")).stream()
               if (snap.to_dict() or {}).get("status") in ("running", "finalising"))
    requests = 0
    for name in ("nik_index", "demographic_index"):
        for snap in db.collection(settings.collection(name)).stream():
            request = (snap.to_dict() or {}).get("request") or {}
            if request.get("status") in ("open", "running"):
                requests += 1
    return jobs + requests
