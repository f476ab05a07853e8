"""The live late-reference fix: a resource referencing an already merged duplicate is rewritten to the
master and journaled under that merge; a running merge's own sweep is left its work, and once that sweep
may have passed, the change is retried until the merge is done."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.resource_changes import ResourceChanged
from shared.services.late_references import MergeStillRunning, fix_late_references
from shared.services.merge_deps import MergeDeps
from tests.fakes import InMemoryFhir, InMemoryMergeJobs, RecordingPublisher

SETTINGS = Settings()


class Jobs(InMemoryMergeJobs):
    """The merge-jobs fake plus the journal the rewrite writes."""

    def __init__(self, jobs):
        super().__init__(jobs)
        self.journal: dict[tuple[str, str], dict] = {}

    def journal_put(self, job_id, entries, *, merge=False):
        for entry in entries:
            key = (job_id, f"{entry['resource_type']}__{entry['id']}")
            self.journal[key] = {**(self.journal.get(key, {}) if merge else {}), **entry}


def deps(fhir: InMemoryFhir, *jobs: dict) -> MergeDeps:
    return MergeDeps(settings=SETTINGS, fhir=fhir, jobs=Jobs(jobs), index=None, publisher=RecordingPublisher())


def job(status: str, remaining: int = 0) -> dict:
    return {"job_id": "mr-1", "master": "m", "duplicates": ["d"], "status": status, "remaining": remaining}


def observation(fhir: InMemoryFhir, subject: str) -> dict:
    return fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                        "subject": {"reference": f"Patient/{subject}"}})


def test_a_reference_to_a_merged_duplicate_is_rewritten_and_journaled():
    fhir = InMemoryFhir()
    resource = observation(fhir, "d")
    wired = deps(fhir, job("done"))
    report = fix_late_references([ResourceChanged("Observation", resource["id"], resource)], wired)
    assert report.rewritten == 1 and report.jobs == ["mr-1"]
    assert fhir.read("Observation", resource["id"])["subject"]["reference"] == "Patient/m"
    entry = wired.jobs.journal[("mr-1", f"Observation__{resource['id']}")]
    assert entry["status"] == "done" and entry["fixed_live"] is True and entry["version_before"] == "1"


def test_nothing_to_do_costs_no_write():
    fhir = InMemoryFhir()
    resource = observation(fhir, "someone-else")
    report = fix_late_references([ResourceChanged("Observation", resource["id"], None)], deps(fhir, job("done")))
    assert report.rewritten == 0 and fhir.read("Observation", resource["id"])["meta"]["versionId"] == "1"


def test_a_running_merge_with_tasks_left_sweeps_it_itself():
    fhir = InMemoryFhir()
    resource = observation(fhir, "d")
    report = fix_late_references([ResourceChanged("Observation", resource["id"], resource)],
                                 deps(fhir, job("running", remaining=3)))
    assert report.rewritten == 0


def test_a_finalising_merge_is_waited_for():
    fhir = InMemoryFhir()
    resource = observation(fhir, "d")
    with pytest.raises(MergeStillRunning):
        fix_late_references([ResourceChanged("Observation", resource["id"], resource)],
                            deps(fhir, job("running", remaining=0)))


def test_an_unmerged_job_is_left_alone():
    fhir = InMemoryFhir()
    resource = observation(fhir, "d")
    report = fix_late_references([ResourceChanged("Observation", resource["id"], resource)],
                                 deps(fhir, job("unmerged")))
    assert report.rewritten == 0


def test_an_unmerge_in_progress_is_left_alone():
    fhir = InMemoryFhir()
    resource = observation(fhir, "d")   # what the unmerge just put back
    report = fix_late_references([ResourceChanged("Observation", resource["id"], resource)],
                                 deps(fhir, {**job("done"), "unmerging": True}))
    assert report.rewritten == 0


def test_a_forged_body_is_never_written():
    """A message body is a hint: a body claiming the resource references a merged duplicate, with other
    content, leads to a read of the store, and only what the store holds is rewritten (issue 12, item 3)."""
    fhir = InMemoryFhir()
    real = observation(fhir, "d")
    forged = {**real, "status": "entered-in-error", "code": {"text": "forged"}}
    fix_late_references([ResourceChanged("Observation", real["id"], forged)], deps(fhir, job("done")))
    stored = fhir.read("Observation", real["id"])
    assert stored["subject"]["reference"] == "Patient/m"
    assert stored["status"] == "final" and stored["code"] == {"text": "x"}
