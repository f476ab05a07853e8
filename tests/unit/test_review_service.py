"""ReviewService over the fakes: review items come from matching, a reviewer approves (a merge request
through the confirmation path) or rejects (do-not-match, never proposed again)."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.group import pair_key
from shared.domain.merge_request import RequestPlan
from shared.domain.patient import blocking_token
from shared.domain.review import ReviewItem, ReviewStatus
from shared.messages import PatientChange
from shared.services.review import ReviewAlreadyDecided, ReviewItemNotFound, ReviewRefused
from tests.fakes import FakeServices, patient_resource

# The rules alone (the model's automatic merges off): these scenarios need the pairs the rules send to
# review to stay there; the model's own decisions are tested in test_matching.py and test_linkage_model.py.
SETTINGS = Settings(model_merge_weight=float("inf"))
NIK = "3201011505900001"
MOTHER_NIK = "3201014103880003"


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def matched(world: FakeServices, name: str, nik: str | None = NIK, **fields) -> dict:
    patient = world.fhir.create(patient_resource(SETTINGS, name, nik, **fields))
    world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    return patient


def only_pending(world: FakeServices, reason: str):
    [item] = world.review.pending(reason)
    return item


def test_a_mononym_goes_to_review_and_approval_publishes_a_merge_request(world):
    a, b = matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    assert world.merge_requests_published() == []
    item = only_pending(world, "name-mismatch")
    assert sorted(item.patient_ids) == sorted((a["id"], b["id"]))

    result = world.review.approve(item.id, "reviewer@district")
    [message] = world.merge_requests_published()
    assert result == {"published": [message["request_id"]], "refused": {}}
    assert {message["master"], *message["duplicates"]} == {a["id"], b["id"]}
    assert message["requested_by"] == "reviewer@district" and message["reason"] == "review-approved"
    decided = world.review.get(item.id)
    assert decided.status == ReviewStatus.APPROVED and decided.decision["decided_by"] == "reviewer@district"
    assert decided.decision["published"] == [message["request_id"]]
    assert world.review.pending() == []


def test_a_decided_item_cannot_be_decided_again(world):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    item = only_pending(world, "name-mismatch")
    world.review.approve(item.id, "first")
    with pytest.raises(ReviewAlreadyDecided):
        world.review.approve(item.id, "second")
    with pytest.raises(ReviewAlreadyDecided):
        world.review.reject(item.id, "second")
    assert len(world.merge_requests_published()) == 1
    assert world.review.get(item.id).decision["decided_by"] == "first"


def test_rejection_is_remembered_and_never_proposed_again(world):
    owner, collider = matched(world, "Bambang Hartono"), matched(world, "Yusuf Maulana")
    item = only_pending(world, "nik-conflict")
    world.review.reject(item.id, "reviewer")
    group = world.groups.get(item.group)
    assert pair_key(owner["id"], collider["id"]) in group.do_not_match
    assert world.review.get(item.id).status == ReviewStatus.REJECTED

    updated = world.fhir.update({**world.fhir.read("Patient", collider["id"]), "gender": "male"})
    outcome = world.matching.handle_change(PatientChange(updated["id"], "upsert"))
    assert outcome.result == "indexed" and outcome.reviews == [] and outcome.published == []
    assert world.review.pending() == []
    assert world.groups.get(item.group).members[collider["id"]]["status"] == "active"


def test_unknown_item(world):
    with pytest.raises(ReviewItemNotFound):
        world.review.approve("rv-unknown", "reviewer")
    with pytest.raises(ReviewItemNotFound):
        world.review.reject("rv-unknown", "reviewer")


def test_approving_a_baby_and_its_mother_merges_nothing(world):
    """The newborn rules hold whoever asks: the approval is recorded with the rule that refused it."""
    mother = matched(world, "Sri Wahyuni", MOTHER_NIK, birth="1988-03-01", gender="female")
    baby = matched(world, "By. Ny. Sri Wahyuni", None, nik_ibu=MOTHER_NIK, birth="2024-02-01", gender="female")
    group = world.keys.get(mother["id"]).groups[0]
    item_id = _propose(world, group, [mother["id"], baby["id"]])
    assert world.review.approve(item_id, "reviewer") == {"published": [], "refused": {baby["id"]: "baby-vs-adult"}}
    assert world.merge_requests_published() == []
    assert world.review.get(item_id).decision["refused"] == {baby["id"]: "baby-vs-adult"}
    assert world.groups.get(group).request is None


def test_approval_in_a_busy_demographic_block_stays_pending_until_its_merge_is_done(world):
    group = f"demographic_index/{blocking_token('1970-06-15', 'male', SETTINGS)}"

    def seed(tx):
        for pid, name in (("x1", "agus salim"), ("x2", "agus salim"), ("y1", "budi hartono"), ("y2", "budi hartono")):
            tx.group.members[pid] = {"status": "active", "kind": "none", "name": name, "birth_date": "1970-06-15",
                                     "gender": "male", "is_baby": False, "active": True, "golden": False,
                                     "version": "1", "score": 3.0, "corroborators": []}
        tx.group.open_request(RequestPlan("x1", ("x2",), "demographic-match", "matching", {})).published = True

    world.groups.transact(group, seed)
    busy = world.groups.get(group).request.id
    item_id = _propose(world, group, ["y1", "y2"])
    with pytest.raises(ReviewRefused):
        world.review.approve(item_id, "reviewer")
    assert world.review.get(item_id).status == ReviewStatus.PENDING and world.merge_requests_published() == []

    claimed = world.requests.claim_request(group, busy)
    world.requests.complete_request(group, busy, claimed.master, list(claimed.duplicates))
    result = world.review.approve(item_id, "reviewer")
    [message] = world.merge_requests_published()
    assert result["published"] == [message["request_id"]] and {message["master"], *message["duplicates"]} == {
        "y1", "y2"}
    assert world.review.get(item_id).status == ReviewStatus.APPROVED


def test_patient_details_come_from_fhir_and_mark_missing_patients(world):
    a, b = matched(world, "Hendra Gunawan", phone="081234567890"), matched(world, "Hendra")
    item = only_pending(world, "name-mismatch")
    world.fhir.delete("Patient", b["id"])
    details = {d["id"]: d for d in world.review.patient_details(item)}
    assert details[b["id"]] == {"id": b["id"], "missing": True}
    assert details[a["id"]]["name"] == "Hendra Gunawan" and details[a["id"]]["birthDate"] == "1990-05-15"
    assert details[a["id"]]["identifiers"] == [f"{SETTINGS.nik_system}|{NIK}"]


def _propose(world: FakeServices, group: str, patient_ids: list[str]) -> str:
    item = ReviewItem.proposed(group, patient_ids, "manual", {}, "2025-01-01T00:00:00Z")
    world.groups.transact(group, lambda tx: tx.propose_reviews([item]))
    return item.id


def test_a_newcomers_candidates_in_one_block_are_one_item_and_a_reviewer_approves_some_of_them(world):
    # Two records of "Budi Santoso" born the same day (one with a NIK), then a third without a NIK: it may be
    # either (or neither). One item names the three; the reviewer approves the newcomer with one of them.
    first, holder = matched(world, "Budi Santoso", nik=None), matched(world, "Budi Santoso")
    newcomer = matched(world, "Budi Santoso", nik=None)
    [cluster] = [item for item in world.review.pending() if newcomer["id"] in item.patient_ids]
    assert sorted(cluster.patient_ids) == sorted((first["id"], holder["id"], newcomer["id"]))
    assert sorted(c["patient"] for c in cluster.evidence["candidates"]) == sorted((first["id"], holder["id"]))

    with pytest.raises(ReviewRefused):
        world.review.approve(cluster.id, "reviewer", patient_ids=[newcomer["id"]])
    world.review.approve(cluster.id, "reviewer", patient_ids=[newcomer["id"], holder["id"]])
    [message] = world.merge_requests_published()
    assert {message["master"], *message["duplicates"]} == {newcomer["id"], holder["id"]}
    assert world.review.get(cluster.id).decision["pairs_added"] == [pair_key(holder["id"], newcomer["id"])]
