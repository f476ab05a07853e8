"""The district report and the pipeline's work-in-progress count, read from the fakes after matching."""

from __future__ import annotations

from shared.config import Settings
from shared.messages import PatientChange
from shared.services.report import build_report, work_in_progress
from tests.fakes import FakeServices, patient_resource

# The rules alone (the model's automatic merges off): these scenarios need the pairs the rules send to
# review to stay there; the model's own decisions are tested in test_matching.py and test_linkage_model.py.
SETTINGS = Settings(model_merge_weight=float("inf"))
JOBS = [
    {"status": "done", "types": {"Observation": {"rewritten": 3}, "Encounter": {"rewritten": 0}}},
    {"status": "running", "types": {"Observation": {"rewritten": 1}, "Condition": {"rewritten": 2}}},
    {"status": "failed", "types": {}},
    {"status": "unmerged"},
]


def matched_world(jobs=JOBS) -> tuple[FakeServices, dict[str, dict]]:
    world = FakeServices(SETTINGS, jobs=jobs)
    people = {
        "budi-1": ("Budi Santoso", "3201011505900001", "simrs"),
        "budi-2": ("Tn. Budi Santoso", "3201011505900001", "simpus"),
        "agus": ("Agus Wijaya", "3201011505900002", "simpus"),
        "hendra-1": ("Hendra Gunawan", "3201011505900003", None),
        "hendra-2": ("Hendra", "3201011505900003", None),           # a mononym: review
    }
    created = {}
    for key, (name, nik, source) in people.items():
        created[key] = world.fhir.create(patient_resource(SETTINGS, name, nik, source=source))
        world.matching.handle_change(PatientChange(created[key]["id"], "upsert"))
    return world, created


def test_report_counts_the_index_merges_and_reviews():
    world, _ = matched_world()
    report = build_report(world.report_sources)
    assert report["patients_seen"] == 5
    assert report["niks_indexed"] == 3 and report["niks_with_duplicates"] == 2
    assert report["index_members_by_status"] == {"master": 1, "duplicate": 1, "active": 2, "review": 1}
    assert report["merges"] == {"done": 1, "in_progress": 1, "failed": 1, "unmerged": 1}
    assert report["resources_rewritten"] == 6
    assert report["resources_rewritten_by_type"] == {"Condition": 2, "Observation": 4}
    assert report["review_pending_by_reason"] == {"name-mismatch": 1} and report["review_decided"] == {}
    assert report["by_source"]["simpus"] == {"patients": 2, "merged_away": 1}
    assert report["by_source"]["simrs"] == {"patients": 1}
    assert report["by_source"]["unknown"] == {"patients": 2, "in_review": 1}


def test_report_counts_decided_reviews():
    world, _ = matched_world()
    [item] = world.review.pending()
    world.review.reject(item.id, "reviewer")
    report = build_report(world.report_sources)
    assert report["review_pending_by_reason"] == {} and report["review_decided"] == {"rejected": 1}


def test_work_in_progress_counts_open_requests_and_running_jobs_until_done():
    world, _ = matched_world(jobs=[{"status": "running"}, {"status": "finalising"}, {"status": "done"}])
    assert work_in_progress(world.report_sources) == 3             # two jobs and Budi's open request
    [message] = world.merge_requests_published()
    claimed = world.requests.claim_request(message["group"], message["request_id"])
    assert work_in_progress(world.report_sources) == 3             # running counts too
    world.requests.complete_request(message["group"], message["request_id"], claimed.master,
                                    list(claimed.duplicates))
    for job_id in list(world.jobs.docs):
        world.jobs.update(job_id, status="done")
    assert work_in_progress(world.report_sources) == 0
