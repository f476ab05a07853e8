"""Review items close themselves, over the fakes: each later decision that answers an item's pairs (a merge,
an unmerge, a human decision on an overlapping item, a patient made inactive, replaced or deleted) closes
it in that decision's own group transaction, with the reason recorded; an item still asking something
stays pending."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.group import Group, MemberStatus
from shared.domain.review import ReviewItem, ReviewStatus
from shared.domain.review_closing import (
    RESOLVED_BY_DECISION,
    RESOLVED_BY_MERGE,
    RESOLVED_BY_UNMERGE,
    SUPERSEDED,
    close_resolved,
    closing_reason,
    settle_reviews,
)
from shared.messages import ForceMerge, PatientChange
from shared.services.review import ReviewAlreadyDecided
from shared.services.unmerge import unmerge
from tests.fakes import FakeServices, TransactionAborted, patient_resource
from tests.unit.merge_world import run_merge, seeded_world

SETTINGS = Settings(model_merge_weight=float("inf"))   # the rules alone: the pairs below stay in review
NIK = "3201011505900001"


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def matched(world: FakeServices, name: str, nik: str | None = NIK, **fields) -> dict:
    patient = world.fhir.create(patient_resource(SETTINGS, name, nik, **fields))
    world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    return patient


def seed_item(groups, group_id: str, patient_ids, reason: str) -> ReviewItem:
    """An item proposed without changing the group (as one left pending before items closed themselves)."""
    item = ReviewItem.proposed(group_id, sorted(patient_ids), reason, {}, "2026-01-01T00:00:00+00:00")
    groups.transact(group_id, lambda tx: tx.propose_reviews([item]))
    return item


def mononym_pair(world: FakeServices) -> tuple[dict, dict, ReviewItem]:
    a, b = matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    [item] = world.review.pending("name-mismatch")
    return a, b, item


def assert_closed(world, item_id: str, reason: str, by: str | None = None) -> ReviewItem:
    closed = world.review.get(item_id)
    assert closed.status == ReviewStatus.CLOSED and closed.decision["closed_reason"] == reason
    assert closed.decision["closed_at"] and "decided_by" not in closed.decision
    if by is not None:
        assert closed.decision["closed_by"] == by
    return closed


def test_a_force_merge_of_the_pair_closes_its_item_as_resolved_by_merge(world):
    a, b, item = mononym_pair(world)
    outcome = world.matching.force_merge(ForceMerge(NIK, "ops", "ops@district", (a["id"], b["id"])))
    assert outcome.published and outcome.refused == {}
    assert_closed(world, item.id, RESOLVED_BY_MERGE, by="index")
    assert world.review.pending() == []
    with pytest.raises(ReviewAlreadyDecided, match="resolved-by-merge"):
        world.review.approve(item.id, "late reviewer")


def test_the_merge_pipeline_closes_an_item_whose_records_it_merges():
    merge = seeded_world()
    services, group_id = merge.services, merge.request.group
    # Left pending while the request was open (written before items closed themselves).
    item = seed_item(services.groups, group_id, [merge.master, merge.duplicates[0]], "name-mismatch")
    assert services.review.get(item.id).status == ReviewStatus.PENDING
    run_merge(merge)
    assert_closed(services, item.id, RESOLVED_BY_MERGE)
    group = services.groups.get(group_id)
    assert group.members[merge.duplicates[0]]["status"] == MemberStatus.MERGED


def test_an_unmerge_closes_an_item_about_the_pair_it_separates():
    merge = seeded_world()
    job = run_merge(merge)
    services, group_id = merge.services, merge.request.group
    item = seed_item(services.groups, group_id, [merge.master, merge.duplicates[1]], "nik-conflict")
    unmerge(job["job_id"], merge.deps)
    assert_closed(services, item.id, RESOLVED_BY_UNMERGE, by="unmerge")


def three_records(world: FakeServices) -> tuple[str, str, str, ReviewItem]:
    """Two near matches and a third record of the NIK; an item asking about all three (it replaces the
    pair's own item: the same records and more)."""
    a, b, pair = mononym_pair(world)
    c = matched(world, "Siti Rahayu", birth="1990-05-15")
    wide = seed_item(world.groups, pair.group, [a["id"], b["id"], c["id"]], "ambiguous-match")
    assert world.review.get(pair.id).decision["closed_reason"] == SUPERSEDED
    return a["id"], b["id"], c["id"], wide


def test_a_rejection_closes_an_overlapping_item_in_its_own_transaction(world):
    a, b, c, wide = three_records(world)
    narrow = seed_item(world.groups, wide.group, [a, c], "model-review")   # newer and narrower: both pending
    writes = world.groups.writes[wide.group]
    world.review.reject(wide.id, "reviewer")
    assert world.review.get(wide.id).status == ReviewStatus.REJECTED
    assert_closed(world, narrow.id, RESOLVED_BY_DECISION, by=f"review-item {wide.id}")
    assert world.groups.writes[wide.group] == writes + 1      # one transaction wrote group and both items
    assert world.groups.get(wide.group).reviews.keys().isdisjoint({wide.id, narrow.id})


def test_an_approval_closes_an_overlapping_item_and_leaves_an_open_question_pending(world):
    a, b, c, wide = three_records(world)
    same_pair = seed_item(world.groups, wide.group, [a, b], "model-review")
    other_pair = seed_item(world.groups, wide.group, [a, c], "model-review")
    world.review.approve(wide.id, "reviewer", patient_ids=[a, b])
    approved = world.review.get(wide.id)
    assert approved.status == ReviewStatus.APPROVED and approved.decision["approved"] == sorted([a, b])
    assert_closed(world, same_pair.id, RESOLVED_BY_MERGE, by=f"review-item {wide.id}")
    # a-c is still unanswered: that item stays for a human, tracked by its group.
    assert world.review.get(other_pair.id).status == ReviewStatus.PENDING
    assert other_pair.id in world.groups.get(wide.group).reviews


def test_a_failed_transaction_writes_neither_the_decision_nor_the_closings(world):
    a, b, c, wide = three_records(world)
    narrow = seed_item(world.groups, wide.group, [a, c], "model-review")
    world.groups.fail_next(5, group_id=wide.group)
    with pytest.raises(TransactionAborted):
        world.review.reject(wide.id, "reviewer")
    assert world.review.get(wide.id).status == ReviewStatus.PENDING
    assert world.review.get(narrow.id).status == ReviewStatus.PENDING


def test_a_patient_made_inactive_supersedes_its_items(world):
    a, b, item = mononym_pair(world)
    world.fhir.update({**world.fhir.read("Patient", b["id"]), "active": False})
    world.matching.handle_change(PatientChange(b["id"], "upsert"))
    assert_closed(world, item.id, SUPERSEDED)


def test_a_patient_replaced_by_another_record_supersedes_its_items(world):
    a, b, item = mononym_pair(world)
    elsewhere = world.fhir.create(patient_resource(SETTINGS, "Hendra G.", None, birth="1980-01-02"))
    world.fhir.update({**world.fhir.read("Patient", b["id"]), "active": False,
                       "link": [{"other": {"reference": f"Patient/{elsewhere['id']}"}, "type": "replaced-by"}]})
    world.matching.handle_change(PatientChange(b["id"], "upsert"))
    assert_closed(world, item.id, SUPERSEDED)


def test_a_deleted_patient_supersedes_its_items(world):
    a, b, item = mononym_pair(world)
    world.fhir.delete("Patient", b["id"])
    world.matching.handle_change(PatientChange(b["id"], "delete"))
    assert_closed(world, item.id, SUPERSEDED)
    assert world.review.with_status(ReviewStatus.CLOSED)[0].id == item.id


def test_a_change_that_answers_nothing_leaves_the_item_pending(world):
    a, b, item = mononym_pair(world)
    world.fhir.update({**world.fhir.read("Patient", a["id"]), "telecom": [{"system": "phone", "value": "0812"}]})
    world.matching.handle_change(PatientChange(a["id"], "upsert"))    # a new version: the group is written
    assert world.review.get(item.id).status == ReviewStatus.PENDING


def test_a_wider_question_about_the_same_records_supersedes_the_item(world):
    a, b, item = mononym_pair(world)
    c = matched(world, "Hendra Gunawan", phone="0812")  # merged with a; b is now a question about a and c
    [wider] = world.review.pending()
    assert sorted(wider.patient_ids) == sorted([a["id"], b["id"], c["id"]])
    assert_closed(world, item.id, SUPERSEDED, by="index")


# --- the pure rule ------------------------------------------------------------------------------------
def _group(**members) -> Group:
    return Group("nik_index/t", members={pid: {"status": status, "active": True, **extra}
                                         for pid, (status, extra) in members.items()})


def test_closing_reason_by_pair():
    item = ReviewItem.proposed("nik_index/t", ["a", "b", "c"], "ambiguous-match", {}, "now")
    open_group = _group(a=("review", {}), b=("active", {}), c=("active", {}))
    assert closing_reason(open_group, item) is None
    merged = _group(a=("merged", {"replaced_by": "b", "active": False}), b=("master", {}),
                    c=("merged", {"replaced_by": "b", "active": False}))
    assert closing_reason(merged, item) == RESOLVED_BY_MERGE
    rejected = _group(a=("review", {}), b=("active", {}), c=("active", {}))
    rejected.do_not_match = {"a|b", "a|c", "b|c"}
    assert closing_reason(rejected, item) == RESOLVED_BY_DECISION
    assert closing_reason(rejected, item, "unmerge") == RESOLVED_BY_UNMERGE
    gone = _group(a=("review", {}), b=("active", {"active": False}))
    assert closing_reason(gone, item) == SUPERSEDED
    # A human-confirmed pair the rules refused to merge (twins) keeps its item for a supervisor.
    confirmed = _group(a=("review", {}), b=("review", {}))
    confirmed.confirmed = {"a|b"}
    assert closing_reason(confirmed, ReviewItem.proposed("nik_index/t", ["a", "b"], "twins", {}, "now")) is None


def test_only_a_new_question_supersedes_an_older_one():
    group = _group(a=("review", {}), b=("active", {}), c=("active", {}))
    older = ReviewItem.proposed("nik_index/t", ["a", "b"], "name-mismatch", {}, "then")
    wider = ReviewItem.proposed("nik_index/t", ["a", "b", "c"], "ambiguous-match", {}, "now")
    # Proposed again but existing already (decided or closed once): the older item stays.
    assert close_resolved(group, [older], proposed=[wider], created=[], now="now") == []
    [closed] = close_resolved(group, [older], proposed=[wider], created=[wider.id], now="now")
    assert closed.id == older.id and closed.decision["closed_reason"] == SUPERSEDED


def test_items_pending_from_before_groups_tracked_them_are_tracked_and_closed_once_answered(world):
    a, b, item = mononym_pair(world)
    c = matched(world, "Siti Rahayu", birth="1990-05-15")
    world.review.reject(item.id, "reviewer")
    # Two items written before groups tracked their items: one already answered (a|b is do-not-match).
    answered = ReviewItem.proposed(item.group, sorted([a["id"], b["id"]]), "model-review", {}, "2025-01-01")
    open_question = ReviewItem.proposed(item.group, sorted([a["id"], c["id"]]), "model-review", {}, "2025-01-01")
    for legacy in (answered, open_question):
        world.reviews.docs[legacy.id] = legacy.to_doc()
    pending = world.review.pending()
    assert world.review.track_pending() == {"groups": len({i.group for i in pending}), "tracked": len(pending),
                                            "closed": 1}
    assert world.review.get(answered.id).decision["closed_reason"] == RESOLVED_BY_DECISION
    assert world.review.get(open_question.id).status == ReviewStatus.PENDING
    assert open_question.id in world.groups.get(item.group).reviews


def test_a_change_reads_only_the_tracked_items_of_the_patients_it_touched():
    group = _group(a=("review", {}), b=("active", {}), c=("review", {}), d=("active", {}))
    stored = {rid: ReviewItem(rid, "name-mismatch", group.id, ids) for rid, ids in
              (("rv-ab", ["a", "b"]), ("rv-cd", ["c", "d"]))}
    group.reviews = {rid: item.patient_ids for rid, item in stored.items()}
    before = group.to_doc()
    group.members["b"]["active"] = False            # b made inactive: only a-b's item can be answered
    asked: list[str] = []

    def load(ids):
        asked.extend(ids)
        return [stored[i] for i in ids]

    closed = settle_reviews(group, before, load, proposed=[], created=[], deciding=[], cause=None, by=None,
                            now="now")
    assert asked == ["rv-ab"] and [i.id for i in closed] == ["rv-ab"]
    assert closed[0].decision["closed_reason"] == SUPERSEDED and list(group.reviews) == ["rv-cd"]
