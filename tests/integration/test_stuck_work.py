"""Stuck work and chains on the local stack (Firestore and Pub/Sub emulators, the FHIR server), the
pipeline driven in process as in test_merge: a merge whose tasks were dead-lettered is failed by the
sweeper, rolled back and its group unwedged (a later true duplicate merges); ``ops jobs --stuck`` shows
it and ``ops unmerge`` refuses it while it runs; two requests sharing a patient claimed at once never
both run."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from ops.cli import app
from shared import bootstrap
from shared.domain.merge_request import RequestPlan
from shared.domain.patient_keys import PatientKeys
from shared.messages import FinaliseMerge, MergeRequested, MergeTask, PatientChange
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_requests import ClaimConflict
from shared.services.merge_worker import run_task
from shared.services.sweeper import sweep
from tests.fakes import patient_resource

NIK = "3201011505900001"
runner = CliRunner()


@pytest.fixture
def stuck_settings(settings, monkeypatch):
    """This test's settings with no republish left: the first sweep fails what is stuck."""
    monkeypatch.setenv("DEDUP_STUCK_REPUBLISH_LIMIT", "0")
    return settings.model_copy(update={"stuck_republish_limit": 0})


def add_patient(settings, fhir) -> dict:
    patient = fhir.create(patient_resource(settings, "Budi Santoso", NIK))
    bootstrap.matching_service(settings).handle_change(PatientChange(patient["id"], "upsert"))
    return patient


def cli(settings, *args: str):
    return runner.invoke(app, ["--project", settings.project_id, "--fhir-url", settings.fhir_base_url, *args],
                         catch_exceptions=False)


def test_a_dead_lettered_task_fails_the_job_unwedges_the_group_and_a_later_duplicate_merges(
        stuck_settings, fhir, topics):
    settings = stuck_settings
    deps = bootstrap.merge_deps(settings)
    first, second = add_patient(settings, fhir), add_patient(settings, fhir)
    notes = {p["id"]: fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                                   "subject": {"reference": f"Patient/{p['id']}"}}) for p in (first, second)}
    (request,) = [MergeRequested.from_dict(m) for m in topics.pull(settings.topic_merge_requests, timeout=20)]
    job = fan_out(request, deps)
    duplicate = job["duplicates"][0]
    tasks = [MergeTask.from_dict(m) for m in topics.pull(settings.topic_merge_tasks, timeout=20)]
    assert {t.resource_type for t in tasks} == {"Observation"}
    run_task(tasks[0], deps)                                # rewrites the duplicate's Observation...
    assert topics.pull(settings.topic_merge_finalise, timeout=10)   # ...and its finalise is dead-lettered
    assert fhir.read("Observation", notes[duplicate]["id"])["subject"]["reference"] == f"Patient/{job['master']}"

    later = datetime.now(UTC) + timedelta(seconds=settings.stuck_after_seconds + 60)
    listed = cli(settings, "jobs", "--stuck", "--older-than", "0", "--json")
    assert listed.exit_code == 0, listed.output
    assert [(r["id"], r["status"], r["kind"]) for r in json.loads(listed.output)] == \
        [(request.request_id, "finalising", "job")]
    refused = cli(settings, "unmerge", request.request_id)
    assert refused.exit_code == 2 and "is finalising" in refused.output and "ops jobs --stuck" in refused.output

    report = sweep(deps, bootstrap.groups(settings), now=later)
    assert report.failed == [request.request_id]
    failed = deps.jobs.get(request.request_id)
    assert failed["status"] == "failed" and failed["failed_reason"] == "stuck-finalising"
    assert fhir.read("Observation", notes[duplicate]["id"])["subject"]["reference"] == f"Patient/{duplicate}"
    group = bootstrap.groups(settings).get(request.group)
    assert group.request is None and group.status_of(duplicate) == "active"
    assert json.loads(cli(settings, "jobs", "--stuck", "--older-than", "0", "--json").output) == []

    # Not wedged: a later true duplicate gets a new request, which merges all three.
    late = add_patient(settings, fhir)
    (again,) = [MergeRequested.from_dict(m) for m in topics.pull(settings.topic_merge_requests, timeout=20)]
    assert again.request_id != request.request_id
    job = fan_out(again, deps)
    for task in [MergeTask.from_dict(m) for m in topics.pull(settings.topic_merge_tasks, timeout=20)]:
        run_task(task, deps)
    (final,) = [FinaliseMerge.from_dict(m) for m in topics.pull(settings.topic_merge_finalise, timeout=20)]
    done = finalise(final, deps)
    assert done["status"] == "done"
    assert sorted([done["master"], *done["duplicates"]]) == sorted([first["id"], second["id"], late["id"]])
    for pid in done["duplicates"]:
        assert fhir.read("Patient", pid)["active"] is False
    assert bootstrap.groups(settings).get(again.group).request.status == "done"


def test_two_requests_sharing_a_patient_claimed_at_once_never_both_run(settings):
    groups, requests, keys = bootstrap.groups(settings), bootstrap.merge_requests(settings), \
        bootstrap.patient_keys(settings)
    both_ran = 0
    for round_ in range(15):
        shared_id, nik_group, block = f"s{round_}", f"nik_index/n{round_}", f"demographic_index/b{round_}"

        def seed(master, duplicate):
            def change(tx):
                for pid in (master, duplicate):
                    tx.group.members[pid] = {"status": "active", "active": True, "golden": False,
                                             "score": 9.0 if pid == master else 1.0}
                return tx.group.open_request(RequestPlan(master, (duplicate,), "test", "matching", {})).id
            return change

        first = groups.transact(nik_group, seed(f"a{round_}", shared_id))
        second = groups.transact(block, seed(shared_id, f"c{round_}"))
        keys.put(PatientKeys(shared_id, groups=[block], linked=[nik_group]))
        start = threading.Barrier(2)

        def claim(group_id, request_id, start=start):
            start.wait()
            try:
                requests.claim_request(group_id, request_id)
            except ClaimConflict:
                pass

        threads = [threading.Thread(target=claim, args=a) for a in ((nik_group, first), (block, second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        both_ran += all(groups.get(g).request.status == "running" for g in (nik_group, block))
    assert both_ran == 0
