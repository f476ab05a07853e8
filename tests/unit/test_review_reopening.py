"""Review items a merge request closed before its merge happened reopen when the request goes without
merging (released as failed by the pipeline or the sweeper, or withdrawn): in the transaction that
removes the request, with the reason on the item, tracked by the group again; once only; never after
the merge completed."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.group import Group, MemberStatus
from shared.domain.merge_request import RequestPlan
from shared.domain.review import ReviewItem, ReviewStatus
from shared.domain.review_closing import (
    REOPENED_MERGE_RELEASED,
    REOPENED_MERGE_WITHDRAWN,
    RESOLVED_BY_MERGE,
    settle_reviews,
)
from shared.messages import ForceMerge, PatientChange
from shared.services.merge_failure import fail_job
from shared.services.merge_fanout import fan_out
from tests.fakes import FakeServices, patient_resource
from tests.unit.merge_world import run_merge, seeded_world

SETTINGS = Settings(model_merge_weight=float("inf"))   # the rules alone: the pair below stays in review
NIK = "3201011505900001"


class Boom(RuntimeError):
    pass


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def force_merged_pair(world: FakeServices) -> tuple[ReviewItem, str]:
    """Two near matches in review, then a force-merge of both: the item closes for the open request."""
    patients = [world.fhir.create(patient_resource(SETTINGS, name, NIK)) for name in ("Hendra Gunawan", "Hendra")]
    for patient in patients:
        world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    [item] = world.review.pending("name-mismatch")
    world.matching.force_merge(ForceMerge(NIK, "ops", "ops@district", tuple(p["id"] for p in patients)))
    request = world.groups.get(item.group).request
    closed = world.review.get(item.id)
    assert closed.status == ReviewStatus.CLOSED and closed.decision["closed_reason"] == RESOLVED_BY_MERGE
    assert closed.decision["merge_request"] == request.id and request.closed_reviews == [item.id]
    return item, request.id


def assert_reopened(services: FakeServices, item_id: str, request_id: str, failed_reason: str) -> ReviewItem:
    item = services.review.get(item_id)
    assert item.status == ReviewStatus.PENDING
    assert not {"closed_reason", "closed_at", "closed_by", "merge_request"} & item.decision.keys()
    assert item.decision["reopened"]["reason"] == REOPENED_MERGE_RELEASED
    assert item.decision["reopened"]["merge_request"] == request_id
    assert item.decision["reopened"]["failed_reason"] == failed_reason and item.decision["reopened"]["at"]
    assert item_id in services.groups.get(item.group).reviews   # tracked again: later changes can close it
    return item


def test_a_released_request_reopens_the_items_it_closed_in_its_own_transaction(world):
    item, request_id = force_merged_pair(world)
    writes = world.groups.writes[item.group]
    world.requests.release_request(item.group, request_id, "job-failed")
    assert world.groups.writes[item.group] == writes + 1     # one transaction: the release and the reopening
    assert_reopened(world, item.id, request_id, "job-failed")
    assert [i.id for i in world.review.pending()] == [item.id]
    # A human can decide it again.
    world.review.reject(item.id, "reviewer")
    assert world.review.get(item.id).status == ReviewStatus.REJECTED


def test_releasing_again_changes_nothing(world):
    item, request_id = force_merged_pair(world)
    world.requests.release_request(item.group, request_id, "job-failed")
    reopened = world.review.get(item.id)
    writes = world.groups.writes[item.group]
    assert world.requests.release_request(item.group, request_id, "job-failed") is None
    assert world.review.get(item.id) == reopened and world.groups.writes[item.group] == writes


def test_a_release_that_crashes_writes_nothing_and_its_retry_reopens(world):
    item, request_id = force_merged_pair(world)
    world.groups.fail_next(group_id=item.group, error=Boom("crash"))
    with pytest.raises(Boom):
        world.requests.release_request(item.group, request_id, "stuck-running")
    assert world.review.get(item.id).status == ReviewStatus.CLOSED
    assert world.groups.get(item.group).request.id == request_id
    world.requests.release_request(item.group, request_id, "stuck-running")   # the sweeper's next run
    assert_reopened(world, item.id, request_id, "stuck-running")


def test_a_failed_merge_job_reopens_the_items_its_claim_closed():
    merge = seeded_world()
    services, group_id = merge.services, merge.request.group
    item = ReviewItem.proposed(group_id, sorted([merge.master, merge.duplicates[0]]), "name-mismatch", {}, "then")
    services.groups.transact(group_id, lambda tx: tx.propose_reviews([item]))
    job = fan_out(merge.request, merge.deps)                  # the claim: running, the item closes for it
    assert services.review.get(item.id).decision["merge_request"] == merge.request.request_id
    fail_job(merge.deps, job, "chain:master-is-replaced")
    assert_reopened(services, item.id, merge.request.request_id, "chain:master-is-replaced")
    assert services.groups.get(group_id).status_of(merge.duplicates[0]) == MemberStatus.ACTIVE


def test_an_item_closed_by_a_merge_that_completed_stays_closed():
    merge = seeded_world()
    services, group_id = merge.services, merge.request.group
    item = ReviewItem.proposed(group_id, sorted([merge.master, merge.duplicates[0]]), "name-mismatch", {}, "then")
    services.groups.transact(group_id, lambda tx: tx.propose_reviews([item]))
    run_merge(merge)
    assert services.requests.release_request(group_id, merge.request.request_id, "late") is None
    closed = services.review.get(item.id)
    assert closed.status == ReviewStatus.CLOSED and closed.decision["closed_reason"] == RESOLVED_BY_MERGE
    assert item.id not in services.groups.get(group_id).reviews


# --- the pure rule ------------------------------------------------------------------------------------
def test_an_item_reopened_by_a_release_closes_again_for_the_follow_up_that_merges_its_records():
    group = Group("nik_index/t", members={pid: {"status": "active", "active": True, "golden": False}
                                          for pid in ("m", "d", "p")})
    running = group.open_request(RequestPlan("m", ("d",), "test", "matching", {}))
    master = group.claim_request(running.id, []).master
    group.open_request(RequestPlan(master, ("p",), "test", "matching", {}))   # p waits as pending
    stored = {"rv-mp": ReviewItem("rv-mp", "name-mismatch", group.id, [master, "p"])}
    group.reviews = {"rv-mp": [master, "p"]}

    def settle(before):
        return settle_reviews(group, before, lambda ids: [stored[i] for i in ids if i in stored], proposed=[],
                              created=[], deciding=[], cause=None, by=None, now="now")

    [closed] = settle({})                                # p waits for the running request's master
    assert closed.decision["merge_request"] == running.id and group.request.closed_reviews == ["rv-mp"]
    before = group.to_doc()
    follow_up = group.release_request(running.id, "job-failed")
    [again] = settle(before)
    assert follow_up.participants == {master, "p"}
    assert again.status == ReviewStatus.CLOSED and again.decision["merge_request"] == follow_up.id
    assert again.decision["reopened"]["merge_request"] == running.id
    assert group.request.closed_reviews == ["rv-mp"] and "rv-mp" not in group.reviews


def test_an_approval_undone_before_its_merge_reopens_the_items_its_request_closed(world):
    names = ("Hendra Gunawan", "Hendra", "Siti Rahayu")
    patients = [world.fhir.create(patient_resource(SETTINGS, name, NIK)) for name in names]
    for patient in patients:
        world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    a, b, c = (p["id"] for p in patients)
    group_id = world.keys.get(a).groups[0]
    wide = ReviewItem.proposed(group_id, [a, b, c], "ambiguous-match", {}, "2026-01-01T00:00:00+00:00")
    world.groups.transact(group_id, lambda tx: tx.propose_reviews([wide]))
    pair = ReviewItem.proposed(group_id, [a, b], "model-review", {}, "2026-01-02T00:00:00+00:00")
    world.groups.transact(group_id, lambda tx: tx.propose_reviews([pair]))
    world.review.approve(wide.id, "clerk@x", patient_ids=[a, b])
    closed = world.review.get(pair.id)
    assert closed.decision["closed_reason"] == RESOLVED_BY_MERGE and closed.decision["merge_request"]
    world.review.undo_last("clerk@x")
    assert world.review.get(wide.id).status == ReviewStatus.PENDING
    again = world.review.get(pair.id)
    assert again.status == ReviewStatus.PENDING and again.decision["reopened"]["reason"] == REOPENED_MERGE_WITHDRAWN
    assert {wide.id, pair.id} <= world.groups.get(group_id).reviews.keys()
