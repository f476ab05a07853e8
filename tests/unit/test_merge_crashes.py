"""A crash at each step of the merge pipeline, injected into the fakes, then Pub/Sub's redelivery:
the merge converges to the same state (one finalise, one Provenance) and an unmerge is still exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.merge_job import JobStatus
from shared.messages import FinaliseMerge, MergeTask
from shared.services.merge_fanout import fan_out
from shared.services.merge_finalise import finalise
from shared.services.merge_worker import run_task
from shared.services.unmerge import unmerge
from tests.fakes import InjectedFailure, InMemoryFhir
from tests.unit.merge_world import assert_merged, assert_restored, deliver, provenances, seeded_world


def _writes(resource_type: str):
    return lambda entries: bool(entries) and entries[0]["request"]["url"].startswith(f"{resource_type}/")


def _journal_pending(resource_type: str):
    return lambda job_id, entries: any(e["resource_type"] == resource_type and e.get("status") == "pending"
                                       for e in entries)


# name -> how to make that step crash once
CRASHES = {
    "fanout-after-two-tasks-published": lambda w: w.services.publisher.fail_next(
        topic="topic_merge_tasks", skip=2, error=InjectedFailure("fan-out died while publishing")),
    "fanout-job-create-lost-reply": lambda w: w.services.jobs.fail_next("create", after=True),
    "worker-fhir-batch-written-reply-lost": lambda w: w.fhir.fail_next("batch", after=True,
                                                                       when=_writes("Observation")),
    "worker-before-fhir-batch": lambda w: w.fhir.fail_next("batch", when=_writes("Condition")),
    "worker-after-pending-journal": lambda w: w.services.jobs.fail_next("journal_put", after=True,
                                                                        when=_journal_pending("Encounter")),
    "worker-before-task-recorded": lambda w: w.services.jobs.fail_next("record_task"),
    "worker-task-recorded-reply-lost": lambda w: w.services.jobs.fail_next("record_task", after=True),
    "worker-finalise-publish-fails": lambda w: w.services.publisher.fail_next(
        topic="topic_merge_finalise", error=InjectedFailure("Pub/Sub unavailable")),
    "finaliser-patients-written-reply-lost": lambda w: w.fhir.fail_next("batch", after=True, when=_writes("Patient")),
    "finaliser-provenance-written-reply-lost": lambda w: w.fhir.fail_next(
        "create", after=True, when=lambda resource: resource["resourceType"] == "Provenance"),
    "finaliser-before-done": lambda w: w.services.jobs.fail_next(
        "update", when=lambda job_id, fields: fields.get("status") == JobStatus.DONE),
}


@pytest.mark.parametrize("everything", [True, False], ids=["everything", "search"])
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_a_crash_then_redelivery_converges(crash, everything):
    world = seeded_world(InMemoryFhir(everything=everything))
    CRASHES[crash](world)
    failures = []

    def delivered(handler, message):
        try:
            return handler(message, world.deps)
        except InjectedFailure as error:
            failures.append(error)
            return deliver(handler, message, world.deps)

    delivered(fan_out, world.request)
    for task in world.take(MergeTask):
        delivered(run_task, task)
    finals = world.take(FinaliseMerge)
    assert len(finals) == 1
    delivered(finalise, finals[0])

    assert len(failures) == 1, "the injected crash did not happen"
    assert_merged(world)
    assert len(provenances(world, "merge")) == 1
    assert world.take(FinaliseMerge) == []
    report = unmerge(world.request.request_id, world.deps)
    assert report.conflicts == [] and report.restored == len(world.referencing())
    assert_restored(world)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_worker_that_dies_between_claiming_and_publishing_the_finalise_is_taken_over():
    """The finalise outbox's claim is "taken over if its holder died" (docs/DESIGN.md). The last task's
    worker claims it, the publish fails and the process dies before ``release_finalise`` runs (or
    that write fails too): Pub/Sub redelivers the task, and later the merge request, and one of them
    must publish the finalise, or the job stays ``finalising`` and the patients are never linked.

    Fails today: ``claim_finalise`` refuses any job whose ``finalise_published`` is set, so only a
    holder that died between creating the claim and setting that flag is ever taken over; the
    redelivered task sees a job no longer ``running`` and the fan-out returns early for the same
    reason."""
    clock = Clock()
    world = seeded_world(clock=clock)
    fan_out(world.request, world.deps)
    tasks = world.take(MergeTask)
    for task in tasks[:-1]:
        run_task(task, world.deps)
    world.services.publisher.fail_next(topic="topic_merge_finalise", error=InjectedFailure("Pub/Sub unavailable"))
    world.services.jobs.fail_next("release_finalise", error=InjectedFailure("the process died"))
    with pytest.raises(InjectedFailure):
        run_task(tasks[-1], world.deps)
    assert world.take(FinaliseMerge) == []

    clock.now += timedelta(minutes=10)              # long after any claim would be stale
    deliver(run_task, tasks[-1], world.deps)        # Pub/Sub redelivers the task whose handler raised
    deliver(fan_out, world.request, world.deps)     # and a redelivery of the merge request
    finals = world.take(FinaliseMerge)
    assert len(finals) == 1, f"job left {world.deps.jobs.get(world.request.request_id)['status']}, no finalise"
    deliver(finalise, finals[0], world.deps)
    assert_merged(world)
