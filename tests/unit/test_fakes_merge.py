"""The fakes the merge use cases run on keep the semantics of their adapters: ``InMemoryMergeJobs`` those
of ``shared.adapters.merge_jobs.MergeJobs`` (its emulator test is
tests/integration/test_merge.py::test_task_results_count_once_and_return_what_remains, mirrored in the
first test here), and the failure injection of ``InMemoryFhir``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.fhir.errors import FhirError
from shared.services.rewrite import supports_everything
from tests.fakes import InjectedFailure, InMemoryFhir, InMemoryMergeJobs

JOB = {"job_id": "job-1", "status": "running", "master": "m", "duplicates": ["d"],
       "types": {"Observation": {"status": "pending", "params": ["subject"]},
                 "Encounter": {"status": "pending", "params": ["patient"]},
                 "Flag": {"status": "done", "via": "everything"}}}
DONE = {"status": "done", "rewritten": 0, "found": 0, "conflicts": 0, "failures": []}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_task_results_count_once_and_return_what_remains():
    jobs, job_id = InMemoryMergeJobs(), "job-1"
    job, created = jobs.create(JOB)
    assert created and job["remaining"] == 2 and job["finalise_published"] is False

    assert jobs.record_task(job_id, "Observation", {"status": "failed", "rewritten": 3, "found": 4,
                                                    "conflicts": 1, "failures": [{"id": "o9"}]}) is None
    previous = jobs.get(job_id, ["types.Observation"])["types"]["Observation"]
    done = {"resource_type": "Observation", "id": "o1", "version_after": "2", "status": "done"}
    assert jobs.record_task(job_id, "Observation", {"status": "done", "rewritten": 1, "found": 1, "conflicts": 0,
                                                    "failures": []}, previous=previous, journal_done=[done]) == 1
    # a second delivery of the same task: counted once, nothing about the remaining count is claimed
    assert jobs.record_task(job_id, "Observation", DONE, previous=previous) is None
    # a late failure of a done type does not overwrite it
    assert jobs.record_task(job_id, "Observation", {"status": "failed", "rewritten": 9, "failures": [{}]}) is None
    job = jobs.get(job_id)
    assert job["remaining"] == 1
    assert {k: job["types"]["Observation"][k] for k in ("status", "rewritten", "found", "conflicts", "failures")} == \
        {"status": "done", "rewritten": 4, "found": 5, "conflicts": 1, "failures": []}
    assert job["types"]["Observation"]["params"] == ["subject"]
    assert [e for e in jobs.journal_entries(job_id) if e["id"] == "o1"] == [done]
    assert jobs.record_task(job_id, "Encounter", DONE, previous={"status": "pending"}) == 0
    assert jobs.get(job_id, ["status", "remaining"]) == {"status": "running", "remaining": 0}


def test_create_never_overwrites_and_reads_take_a_field_mask():
    jobs = InMemoryMergeJobs()
    jobs.create(JOB)
    stored, created = jobs.create({**JOB, "master": "other"})
    assert not created and stored["master"] == "m"
    assert jobs.get("job-1", ["master", "types.Flag", "types.Nope", "missing"]) == \
        {"master": "m", "types": {"Flag": {"status": "done", "via": "everything"}}}
    assert jobs.get("job-2") is None
    got = jobs.get("job-1")
    got["types"]["Flag"]["status"] = "changed"               # a read is the caller's copy
    assert jobs.get("job-1")["types"]["Flag"]["status"] == "done"


def test_the_finalise_is_claimed_once_when_every_task_is_done_and_a_stale_claim_is_taken_over():
    clock = Clock()
    jobs = InMemoryMergeJobs(clock=clock)
    jobs.create(JOB)
    assert not jobs.claim_finalise("job-1")                  # tasks remain
    jobs.record_task("job-1", "Observation", DONE)
    jobs.record_task("job-1", "Encounter", DONE)
    assert jobs.claim_finalise("job-1") and not jobs.claim_finalise("job-1")
    assert jobs.get("job-1", ["status", "finalise_published"]) == {"status": "finalising", "finalise_published": True}
    jobs.release_finalise("job-1")                           # the publish failed
    assert jobs.get("job-1", ["status", "finalise_published"]) == {"status": "running", "finalise_published": False}
    assert jobs.claim_finalise("job-1")
    # A holder that died after creating its claim and before marking the job: taken over after a minute.
    jobs.update("job-1", status="running", finalise_published=False)
    assert not jobs.claim_finalise("job-1")
    clock.now += timedelta(seconds=61)
    assert jobs.claim_finalise("job-1") and jobs.tasks["job-1"]["_finalise"]["taken_over"] is True
    assert not jobs.claim_finalise("missing")


def test_journal_merges_filters_by_kind_and_finished_lists_done_jobs():
    jobs = InMemoryMergeJobs([{"job_id": "old", "status": "done"}, {"job_id": "undone", "status": "unmerged"}])
    jobs.create(JOB)
    jobs.journal_put("job-1", [{"resource_type": "Observation", "id": "o1", "kind": "reference", "status": "pending",
                                "version_before": "1"},
                               {"resource_type": "Patient", "id": "m", "kind": "patient", "status": "pending"}])
    jobs.journal_put("job-1", [{"resource_type": "Observation", "id": "o1", "status": "done", "version_after": "2"}],
                     merge=True)
    assert jobs.journal_entries("job-1", "reference") == [{"resource_type": "Observation", "id": "o1",
                                                           "kind": "reference", "status": "done",
                                                           "version_before": "1", "version_after": "2"}]
    assert [e["id"] for e in jobs.journal_entries("job-1")] == ["o1", "m"]
    jobs.journal_put("job-1", [{"resource_type": "Patient", "id": "m", "status": "done"}])   # no merge: replaced
    assert jobs.journal_entries("job-1", "patient") == []
    assert [j["job_id"] for j in jobs.finished()] == ["old"]
    assert [j["job_id"] for j in jobs.all()] == ["job-1", "old", "undone"]
    jobs.update("job-1", **{"status": "done", "types.Flag.note": "x"})
    assert jobs.get("job-1", ["types.Flag"])["types"]["Flag"] == {"status": "done", "via": "everything", "note": "x"}
    with pytest.raises(LookupError):
        jobs.update("missing", status="done")


def test_injected_failures_fire_once_before_or_after_the_work():
    jobs = InMemoryMergeJobs()
    jobs.fail_next("create", after=True)
    with pytest.raises(InjectedFailure):
        jobs.create(JOB)
    assert jobs.get("job-1") is not None                     # the work was done, the reply lost
    fhir = InMemoryFhir()
    patient = fhir.create({"resourceType": "Patient"})
    fhir.fail_next("update", skip=1)
    fhir.update(patient)
    with pytest.raises(InjectedFailure):
        fhir.update(patient)
    assert fhir.read("Patient", patient["id"])["meta"]["versionId"] == "2"
    seen = []
    fhir.before_next("batch", lambda entries: seen.append(len(entries)))
    fhir.batch([{"request": {"method": "GET", "url": f"Patient/{patient['id']}"}}])
    assert seen == [1]


def test_a_server_without_everything_does_not_declare_or_answer_it():
    fhir = InMemoryFhir(everything=False)
    patient = fhir.create({"resourceType": "Patient"})
    assert supports_everything(InMemoryFhir().capability()) and not supports_everything(fhir.capability())
    with pytest.raises(FhirError) as raised:
        list(fhir.everything(patient["id"]))
    assert raised.value.status == 400
