"""The fakes keep the semantics of the adapters they stand for (tests/fakes.py): what the orchestration
tests rely on is checked here once."""

from __future__ import annotations

import threading

import pytest

from shared.domain.group import Member
from shared.domain.review import ReviewItem, ReviewStatus
from shared.fhir.compartment import reference_search_plan
from shared.fhir.errors import Gone, NotFound, PreconditionFailed
from shared.fhir.wire import next_link_path
from tests.fakes import InMemoryFhir, InMemoryGroups, PublishFailed, RecordingPublisher, TransactionAborted

GROUP = "nik_index/token-1"


def add_member(pid: str, **fields):
    def change(tx):
        member: Member = {"status": "active", **fields}
        tx.group.members[pid] = member
        return pid
    return change


def test_group_is_written_only_when_it_changed_and_loads_are_copies():
    groups = InMemoryGroups()
    groups.transact(GROUP, add_member("a"))
    groups.transact(GROUP, add_member("a"))          # same document: no write
    groups.transact(GROUP, lambda tx: tx.group.members.get("a"))
    assert groups.writes[GROUP] == 1
    loaded = groups.get(GROUP)
    assert loaded.updated_at is not None
    loaded.members["a"]["status"] = "merged"           # a loaded group is the caller's copy
    assert groups.get(GROUP).members["a"]["status"] == "active"
    assert groups.get("nik_index/none") is None
    assert [g.id for g in groups.all("nik_index")] == [GROUP] and list(groups.all("demographic_index")) == []


def test_proposed_review_items_are_created_only_when_absent():
    groups = InMemoryGroups()
    item = ReviewItem.proposed(GROUP, ["a", "b"], "nik-conflict", {}, "2025-01-01T00:00:00Z")

    def propose(tx):
        tx.propose_reviews([item])

    groups.transact(GROUP, propose)                     # created, and tracked by its group (its one write)
    assert groups.reviews.get(item.id).status == ReviewStatus.PENDING and groups.writes[GROUP] == 1
    assert groups.get(GROUP).reviews == {item.id: ["a", "b"]}
    groups.reviews.decide(item.id, ReviewStatus.REJECTED, {"decided_by": "r"})
    groups.transact(GROUP, propose)                     # a decided item is never reset to pending
    assert groups.reviews.get(item.id).status == ReviewStatus.REJECTED and groups.writes[GROUP] == 1
    assert groups.reviews.pending() == []
    with pytest.raises(LookupError):
        groups.reviews.decide("rv-unknown", ReviewStatus.APPROVED, {})


def test_aborted_attempts_are_retried_and_failed_ones_write_nothing():
    groups = InMemoryGroups(attempts=3)
    groups.fail_next(2)
    assert groups.transact(GROUP, add_member("a")) == "a"
    assert groups.attempts[GROUP] == 3 and groups.writes[GROUP] == 1

    groups.fail_next(3, group_id=GROUP)
    with pytest.raises(TransactionAborted):
        groups.transact(GROUP, add_member("b"))
    groups.fail_next(1, error=RuntimeError("firestore unavailable"))
    with pytest.raises(RuntimeError):
        groups.transact(GROUP, add_member("c"))
    assert set(groups.get(GROUP).members) == {"a"}


def test_transactions_over_one_group_serialise():
    groups = InMemoryGroups()

    def increment(tx):
        count = tx.group.members.get("counter", {}).get("score", 0)
        threading.Event().wait(0.0005)                 # widen the read-modify-write window
        tx.group.members["counter"] = {"score": count + 1}

    threads = [threading.Thread(target=lambda: [groups.transact(GROUP, increment) for _ in range(20)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert groups.get(GROUP).members["counter"]["score"] == 160


def test_publisher_records_json_and_fails_on_demand():
    publisher = RecordingPublisher()
    publisher.fail_next(topic="merge-requests")
    with pytest.raises(PublishFailed):
        publisher.publish_bytes("merge-requests", b'{"a":1}')
    publisher.publish_bytes("merge-requests", b'{"a":[1,2]}', origin="test")
    publisher.publish_bytes("other", b"x")
    assert publisher.published == [("merge-requests", b'{"a":[1,2]}'), ("other", b"x")]
    assert publisher.attributes[0] == {"origin": "test"}
    assert publisher.payloads("merge-requests") == [b'{"a":[1,2]}']


def test_fhir_versions_reads_and_conditional_writes():
    fhir = InMemoryFhir()
    created = fhir.create({"resourceType": "Patient", "active": True})
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    updated = fhir.update({**created, "active": False}, if_match="1")
    assert updated["meta"]["versionId"] == "2" and updated["meta"]["lastUpdated"] > created["meta"]["lastUpdated"]
    with pytest.raises(PreconditionFailed):
        fhir.update(created, if_match="1")
    assert fhir.vread("Patient", pid, "1")["active"] is True
    assert [v["meta"]["versionId"] for v in fhir.history("Patient", pid)] == ["2", "1"]
    outcomes = fhir.batch([
        {"resource": updated, "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"2"'}},
        {"resource": updated, "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"2"'}},
    ])
    assert [o.status for o in outcomes] == [200, 412] and outcomes[0].etag == 'W/"3"'
    fhir.delete("Patient", pid)
    with pytest.raises(Gone):
        fhir.read("Patient", pid)
    with pytest.raises(NotFound):
        fhir.read("Patient", "nobody")


def test_fhir_search_identifier_reference_paging_and_everything():
    fhir = InMemoryFhir(page_size=2)
    ids = [fhir.create({"resourceType": "Patient", "identifier": [{"system": f"s{i % 2}", "value": "v"}]})["id"]
           for i in range(5)]
    assert [p["id"] for p in fhir.search("Patient", {"identifier": "s1|v,s9|x"})] == ids[1::2]
    assert len(list(fhir.search("Patient", {"unknown-param": "x"}))) == 5     # ignored, as lenient servers do
    observation = fhir.create({"resourceType": "Observation", "subject": {"reference": f"Patient/{ids[0]}"}})
    fhir.create({"resourceType": "Observation", "performer": [{"reference": f"Patient/{ids[0]}"}]})
    found = fhir.search("Observation", [("subject", f"Patient/{ids[0]},Patient/{ids[1]}")])
    assert [r["id"] for r in found] == [observation["id"]]
    assert [r["id"] for r in fhir.search("Observation", {"patient": f"Patient/{ids[0]}"})] == [observation["id"]]
    assert {r["resourceType"] for r in fhir.everything(ids[0])} == {"Patient", "Observation"}

    first = fhir.get_path("Patient?_count=2&_sort=-_id")
    assert [e["resource"]["id"] for e in first["entry"]] == ids[:-3:-1] and first["total"] == 5
    pages, path = [], "Patient?_count=2&_sort=_id"
    while path:
        bundle = fhir.get_path(path)
        pages.append([e["resource"]["id"] for e in bundle["entry"]])
        link = next((item["url"] for item in bundle["link"] if item["relation"] == "next"), None)
        path = next_link_path(link, fhir.base_url) if link else None
    assert pages == [ids[0:2], ids[2:4], ids[4:]]


def test_fhir_capability_plans_every_compartment_type_and_everything():
    capability = InMemoryFhir().capability()
    plan, skipped = reference_search_plan(capability)
    assert plan["Observation"] == ["subject", "performer"] and "Encounter" in plan
    assert set(skipped) == {"AuditEvent", "Provenance"}
    patient = next(r for r in capability["rest"][0]["resource"] if r["type"] == "Patient")
    assert [op["name"] for op in patient["operation"]] == ["everything"]
