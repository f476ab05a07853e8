"""The merge pipeline's use cases (fan-out, worker, finaliser) over the in-memory fakes, driven with the
messages they publish to each other: a full merge, redelivery of every message, a clinician's edit
between a read and a write, a resource created while the merge runs, a server without ``$everything``.
The crashes are in test_merge_crashes.py; unmerge, preview and reconcile in test_merge_undo_and_late.py."""

from __future__ import annotations

from collections import Counter

from shared.fhir.references import references_any, without_meta
from shared.messages import FinaliseMerge, MergeRequested, MergeTask
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_worker import run_task
from tests.fakes import InMemoryFhir
from tests.unit.merge_world import assert_merged, provenances, ref, run_merge, seeded_world


def test_a_full_merge_moves_every_reference_to_the_master_and_links_the_patients():
    world = seeded_world()
    referencing = world.referencing()
    assert world.request.duplicates == (world.duplicates[0],)   # the second joined the open request later

    job = run_merge(world)

    assert (job["master"], job["duplicates"]) == (world.master, world.duplicates)   # as the claim answered
    assert_merged(world)
    tasks = {t: task for t, task in job["types"].items() if task.get("via") != "everything"
             and task["status"] == "done"}
    assert set(tasks) == {t for t, _ in referencing}           # $everything said which types need a task
    assert sum(task["rewritten"] for task in tasks.values()) == len(referencing)
    assert job["types"]["Provenance"]["status"] == "skipped" and job["swept"] == {}
    # each resource written once, the one naming both duplicates included
    both = next(key for key, r in referencing.items() if r.get("performer"))
    assert world.fhir.read(*both)["subject"] == ref(world.master) and world.fhir.read(*both)["performer"] == \
        [ref(world.master)]
    assert {key: world.fhir.read(*key)["meta"]["versionId"] for key in referencing} == \
        {key: "2" for key in referencing}
    # every rewrite is journaled with the version to restore, and completed
    journal = {(e["resource_type"], e["id"]): e for e in world.deps.jobs.journal_entries(job["job_id"], "reference")}
    assert set(journal) == set(referencing)
    assert {(e["status"], e["version_before"], e["version_after"]) for e in journal.values()} == {("done", "1", "2")}
    assert sorted(journal[both]["duplicates"]) == sorted(world.duplicates)
    assert {e["id"] for e in world.deps.jobs.journal_entries(job["job_id"], "patient")} == \
        {world.master, *world.duplicates}


def test_every_message_delivered_twice_changes_nothing_more():
    world = seeded_world()
    job = run_merge(world, twice=True)

    assert_merged(world)
    assert world.take(FinaliseMerge) == []                        # the finalise went out once
    assert {key: world.fhir.read(*key)["meta"]["versionId"] for key in world.referencing()} == \
        {key: "2" for key in world.referencing()}
    assert {pid: world.fhir.read("Patient", pid)["meta"]["versionId"] for pid in world.duplicates} == \
        {pid: "2" for pid in world.duplicates}
    assert sum(t.get("rewritten", 0) for t in job["types"].values()) == len(world.referencing())
    # a request delivered again after the merge finished publishes nothing
    fan_out(world.request, world.deps)
    assert world.take(MergeTask) == [] and world.take(FinaliseMerge) == []
    assert len(provenances(world, "merge")) == 1 and world.take(MergeRequested) == []


def test_tasks_delivered_in_any_order_and_concurrently_publish_one_finalise():
    from shared.concurrency import run_concurrently

    world = seeded_world()
    fan_out(world.request, world.deps)
    tasks = world.take(MergeTask)
    run_concurrently(lambda task: run_task(task, world.deps), [*reversed(tasks), *tasks], 8)
    [final] = world.take(FinaliseMerge)
    finalise(final, world.deps)
    assert_merged(world)


def test_a_clinicians_edit_between_read_and_write_is_read_again_and_kept():
    world = seeded_world()
    target = next(key for key, r in world.referencing().items() if key[0] == "Condition")
    note = [{"text": "clinical update during the merge"}]

    def clinician_edits(entries):
        current = world.fhir.read(*target)
        world.fhir.update({**current, "note": note})

    # after the fan-out listed the Condition (version 1), before the worker's batch writes it
    world.fhir.before_next("batch", clinician_edits,
                           when=lambda entries: any(e["request"]["url"] == "/".join(target) for e in entries))
    job = run_merge(world)

    now = world.fhir.read(*target)
    assert now["note"] == note and now["subject"] == ref(world.master) and now["asserter"] == ref(world.master)
    assert now["meta"]["versionId"] == "3"
    assert job["types"]["Condition"]["conflicts"] == 1 and job["types"]["Condition"]["rewritten"] == 1
    [entry] = [e for e in world.deps.jobs.journal_entries(job["job_id"]) if (e["resource_type"], e["id"]) == target]
    assert (entry["version_before"], entry["version_after"], entry["status"]) == ("2", "3", "done")


def test_a_resource_created_while_the_merge_runs_is_caught_by_the_finalisers_sweep():
    world = seeded_world()
    fan_out(world.request, world.deps)
    tasks = world.take(MergeTask)
    # After $everything: a type that got no task, and one whose task has already run.
    late = [world.fhir.create({"resourceType": "Procedure", "status": "completed", "subject": ref(world.duplicates[1]),
                               "performer": [{"actor": ref(world.duplicates[0])}]})]
    for task in tasks:
        run_task(task, world.deps)
        if task.resource_type == "Encounter":
            late.append(world.fhir.create({"resourceType": "Encounter", "status": "planned",
                                           "class": {"code": "AMB"}, "subject": ref(world.duplicates[0])}))
    [final] = world.take(FinaliseMerge)
    job = finalise(final, world.deps)

    assert_merged(world)
    for resource in late:
        now = world.fhir.read(resource["resourceType"], resource["id"])
        assert not references_any(now, world.duplicates) and references_any(now, [world.master])
    assert job["swept"] == {"Encounter": 1, "Procedure": 1}
    journaled = {(e["resource_type"], e["id"]) for e in world.deps.jobs.journal_entries(job["job_id"], "reference")}
    assert {(r["resourceType"], r["id"]) for r in late} <= journaled     # an unmerge restores them too


def test_a_server_without_everything_takes_the_search_path_and_ends_in_the_same_state():
    with_everything, without = seeded_world(), seeded_world(InMemoryFhir(everything=False))
    assert (without.master, without.duplicates) == (with_everything.master, with_everything.duplicates)
    run_merge(with_everything)
    job = run_merge(without)

    assert_merged(without)
    assert without.fhir.requests["everything"] == 0 and with_everything.fhir.requests["everything"] > 0
    searched = {t for t, task in job["types"].items() if task["status"] == "done"}
    assert not any(task.get("via") == "everything" for task in job["types"].values())
    assert len(searched) > 50                         # every type of the compartment the server supports
    assert {t: task["rewritten"] for t, task in job["types"].items() if task.get("rewritten")} == \
        Counter(t for t, _ in without.referencing())

    def state(world):
        # the Provenance's ``recorded`` is the wall clock: compare the rest
        return [{k: v for k, v in without_meta(r).items() if k != "recorded"} for r in world.fhir.resources()]

    assert state(without) == state(with_everything)
