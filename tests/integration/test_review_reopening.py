"""On the real Firestore emulator (bootstrap's repositories): a review item closed by a merge request's
coming merge reopens in the transaction that releases the request, with the reason stored on the item
and the group tracking it again; and the sweeper's one-time pass makes a group written before it
tracked its items learn them, recording in the district's upkeep mark that it is done."""

from __future__ import annotations

import base64

from cloudevents.http import CloudEvent

from functions.ops import sweep_stuck_work
from shared import bootstrap
from shared.adapters.index_codec import encode
from shared.domain.merge_request import RequestPlan
from shared.domain.review import ReviewItem, ReviewStatus
from shared.domain.review_closing import REOPENED_MERGE_RELEASED, RESOLVED_BY_MERGE, SUPERSEDED
from shared.services.review_tracking import TRACKING_MARK, track_pending_once


def seed_group(groups, group_id: str, patient_ids: list[str]) -> None:
    def seed(tx):
        tx.group.members.update({pid: {"status": "review", "active": True, "golden": False,
                                       "score": 9.0 if pid == patient_ids[0] else 1.0} for pid in patient_ids})
    groups.transact(group_id, seed)


def test_a_released_request_reopens_the_item_its_coming_merge_closed_on_the_emulator(settings, firestore_db):
    groups, items = bootstrap.groups(settings), bootstrap.review_items(settings)
    group_id, master, duplicate = "nik_index/reopen", "ro-a", "ro-b"
    seed_group(groups, group_id, [master, duplicate])
    item = ReviewItem.proposed(group_id, [master, duplicate], "name-mismatch", {}, "2026-01-01T00:00:00+00:00")
    groups.transact(group_id, lambda tx: tx.propose_reviews([item]))
    request_id = groups.transact(group_id, lambda tx: tx.group.open_request(
        RequestPlan(master, (duplicate,), "force-merge", "ops", {})).id)
    closed = items.get(item.id)
    assert closed.status == ReviewStatus.CLOSED and closed.decision["closed_reason"] == RESOLVED_BY_MERGE
    assert closed.decision["merge_request"] == request_id
    assert groups.get(group_id).request.closed_reviews == [item.id]

    bootstrap.merge_requests(settings).release_request(group_id, request_id, "job-failed")
    reopened = items.get(item.id)
    assert reopened.status == ReviewStatus.PENDING and "closed_reason" not in reopened.decision
    assert reopened.decision["reopened"]["reason"] == REOPENED_MERGE_RELEASED
    assert reopened.decision["reopened"]["failed_reason"] == "job-failed"
    group = groups.get(group_id)
    assert group.request is None and item.id in group.reviews
    assert [i.id for i in items.pending()] == [item.id]
    # Released again (the sweeper's retry): nothing changes.
    assert bootstrap.merge_requests(settings).release_request(group_id, request_id, "job-failed") is None
    assert items.get(item.id) == reopened


def test_the_one_time_pass_tracks_an_item_of_a_group_written_before_tracking_on_the_emulator(
        settings, firestore_db):
    groups, items, marks = bootstrap.groups(settings), bootstrap.review_items(settings), \
        bootstrap.upkeep_marks(settings)
    group_id, ids = "nik_index/legacy", ["lg-a", "lg-b"]
    seed_group(groups, group_id, ids)
    legacy = ReviewItem.proposed(group_id, ids, "model-review", {}, "2025-01-01T00:00:00+00:00")
    firestore_db.collection(settings.collection("review_items")).document(legacy.id).set(
        encode("review_items", legacy.to_doc()))
    assert groups.get(group_id).reviews == {}

    # The scheduled sweep (its entry point, as Cloud Scheduler's message reaches it) runs the pass.
    sweep_stuck_work(CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//test"},
                                {"message": {"data": base64.b64encode(b"{}").decode(), "messageId": "s1"}}))
    assert groups.get(group_id).reviews == {legacy.id: sorted(ids)}
    mark = marks.get(TRACKING_MARK)
    assert mark["status"] == "done" and (mark["groups"], mark["tracked"], mark["closed"]) == (1, 1, 0)
    assert mark["after"] == legacy.id
    assert track_pending_once(items, groups, marks) is None

    def inactive(tx):
        tx.group.members[ids[1]]["active"] = False
    groups.transact(group_id, inactive)
    assert items.get(legacy.id).decision["closed_reason"] == SUPERSEDED
