"""MergeRequests over the fakes: the request's life after matching published it (claim by the merge
fan-out, completion by the finaliser, an unmerge), as the merge pipeline drives it."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.group import pair_key
from shared.domain.merge_request import MergeRequest, RequestPlan
from shared.domain.patient import patient_facts
from shared.messages import PatientChange
from tests.fakes import FakeServices, patient_resource

SETTINGS = Settings()
NIK = "3201011505900001"
GROUP = f"nik_index/{patient_facts(patient_resource(SETTINGS, 'x', NIK), SETTINGS).nik_token}"


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def as_dict(message):
    """A merge-requests message as its JSON body carries it (None stays None)."""
    return message.to_dict() if message is not None else None


def matched(world: FakeServices, *names: str) -> list[dict]:
    patients = [world.fhir.create(patient_resource(SETTINGS, name, NIK)) for name in names]
    for patient in patients:
        world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    return patients


def _plan(master: str, *duplicates: str) -> RequestPlan:
    return RequestPlan(master, duplicates, "nik-match", "matching", {})


def test_claim_reselects_the_master_when_none_is_golden(world):
    """The request names x1 (the first matched), but x2 is the better record: the claim moves it."""
    def seed(tx):
        for pid, score in (("x1", 2.0), ("x2", 5.0), ("x3", 3.0)):
            tx.group.members[pid] = {"status": "active", "kind": "nik", "name": "budi santoso", "score": score,
                                     "active": True, "golden": False, "version": "1"}
        tx.group.open_request(_plan("x1", "x2", "x3"))

    world.groups.transact(GROUP, seed)
    request_id = world.groups.get(GROUP).request.id
    claimed = as_dict(world.requests.claim_request(GROUP, request_id))
    assert claimed["request_id"] == request_id
    assert claimed["master"] == "x2" and claimed["duplicates"] == ["x1", "x3"]
    group = world.groups.get(GROUP)
    assert group.request.status == "running" and group.master == "x2" and group.members["x1"]["status"] == "duplicate"


def test_claim_keeps_a_golden_master(world):
    def seed(tx):
        tx.group.members["gold"] = {"status": "master", "score": 1.0, "golden": True, "active": True}
        tx.group.members["rich"] = {"status": "active", "score": 6.0, "golden": False, "active": True}
        tx.group.open_request(_plan("gold", "rich"))

    world.groups.transact(GROUP, seed)
    claimed = as_dict(world.requests.claim_request(GROUP, world.groups.get(GROUP).request.id))
    assert claimed["master"] == "gold" and claimed["duplicates"] == ["rich"]


def test_a_redelivered_claim_returns_the_same_request_and_an_unknown_one_none(world):
    matched(world, "Budi Santoso", "Budi Santoso")
    [message] = world.merge_requests_published()
    first = as_dict(world.requests.claim_request(GROUP, message["request_id"]))
    again = as_dict(world.requests.claim_request(GROUP, message["request_id"]))
    assert first == again and first["request_id"] == message["request_id"]
    assert as_dict(world.requests.claim_request(GROUP, "mr-unknown")) is None


def test_completion_with_pending_members_opens_the_follow_up(world):
    matched(world, "Budi Santoso", "Budi Santoso")
    [message] = world.merge_requests_published()
    claimed = as_dict(world.requests.claim_request(GROUP, message["request_id"]))
    [late] = matched(world, "BUDI SANTOSO")                       # arrives while the merge runs
    assert world.groups.get(GROUP).members[late["id"]]["status"] == "pending"
    assert len(world.merge_requests_published()) == 1             # nothing published for it yet

    follow_up = as_dict(world.requests.complete_request(GROUP, claimed["request_id"], claimed["master"],
                                                claimed["duplicates"]))
    assert follow_up["master"] == claimed["master"] and follow_up["duplicates"] == [late["id"]]
    assert follow_up["request_id"] != claimed["request_id"]
    group = world.groups.get(GROUP)
    assert group.request.follow_up_of == claimed["request_id"] and group.request.status == "open"
    assert group.previous_request.status == "done"
    assert group.members[claimed["duplicates"][0]]["status"] == "merged"
    assert group.members[claimed["master"]]["golden"] is True
    # The finaliser's redelivery gets the same follow-up while it is unpublished, then nothing.
    again = as_dict(world.requests.complete_request(GROUP, claimed["request_id"], claimed["master"],
                                                    claimed["duplicates"]))
    assert again == follow_up
    assert world.requests.publish_open([GROUP]) == [follow_up["request_id"]]
    assert as_dict(world.requests.complete_request(GROUP, claimed["request_id"], claimed["master"],
                                           claimed["duplicates"])) is None


def test_completion_without_pending_members_is_final(world):
    matched(world, "Budi Santoso", "Budi Santoso")
    [message] = world.merge_requests_published()
    claimed = as_dict(world.requests.claim_request(GROUP, message["request_id"]))
    assert as_dict(world.requests.complete_request(GROUP, claimed["request_id"], claimed["master"],
                                           claimed["duplicates"])) is None
    group = world.groups.get(GROUP)
    assert group.request.status == "done" and not group.request.in_progress
    assert as_dict(world.requests.claim_request(GROUP, claimed["request_id"])) is None


def test_unmerge_records_do_not_match_and_matching_never_merges_them_again(world):
    matched(world, "Budi Santoso", "Budi Santoso")
    [message] = world.merge_requests_published()
    claimed = as_dict(world.requests.claim_request(GROUP, message["request_id"]))
    master, [duplicate] = claimed["master"], claimed["duplicates"]
    as_dict(world.requests.complete_request(GROUP, claimed["request_id"], master, [duplicate]))

    world.requests.record_unmerge(GROUP, master, [duplicate])
    group = world.groups.get(GROUP)
    assert pair_key(master, duplicate) in group.do_not_match
    assert group.members[duplicate]["status"] == "active" and group.members[duplicate]["replaced_by"] is None
    assert group.members[master]["status"] == "active" and not group.members[master]["golden"]

    # The unmerge restores the duplicate in FHIR: its new version comes through matching again.
    restored = world.fhir.read("Patient", duplicate)
    world.fhir.update({**restored, "name": [{"text": "Budi Santoso"}]})
    outcome = world.matching.handle_change(PatientChange(duplicate, "upsert"))
    assert outcome.result == "indexed" and outcome.published == []
    assert len(world.merge_requests_published()) == 1


def test_request_message_round_trip(world):
    """What is published is what the pipeline claims: the message names the group and never a NIK."""
    matched(world, "Budi Santoso", "Tn. Budi Santoso")
    [message] = world.merge_requests_published()
    request = world.groups.get(GROUP).request
    assert isinstance(request, MergeRequest)
    assert message == {"request_id": request.id, "group": GROUP, "nik_token": GROUP.split("/")[1],
                       "master": request.master, "duplicates": request.duplicates, "reason": request.reason,
                       "requested_by": "matching", "evidence": request.evidence}
