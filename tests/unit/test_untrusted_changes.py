"""Issue 12, items 3 and 4: what a patient-changes message says is believed only where nobody else can
publish it, and an older version never changes the index. Over the in-memory fakes, through the real
decoder (``parse_patient_change``), so the trust decision is the one production makes."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from shared.config import Settings
from shared.messages import ChangeSource
from shared.notifications import parse_patient_change
from tests.fakes import FakeServices, patient_resource

SETTINGS = Settings()
NIK_A = "3201011505900001"
NIK_B = "3201011505900002"
STORE = "projects/p/locations/l/datasets/d/fhirStores/s"


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def relayed(body: bytes, method: str = "PUT", path: str | None = None) -> dict:
    """A message as subscription-relay publishes it."""
    attributes = {"source": "fhir-subscription", "httpMethod": method}
    if path:
        attributes["resourcePath"] = path
    return {"message": {"data": base64.b64encode(body).decode(), "attributes": attributes, "messageId": "m1"}}


def healthcare(data: bytes, action: str = "UpdateResource", payload: str = "NameOnly") -> dict:
    """A message in the Healthcare API's notification format."""
    attributes = {"action": action, "resourceType": "Patient", "payloadType": payload, "storeName": STORE}
    return {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m2"}}


def name_only(patient_id: str, version: str | None = None, action: str = "UpdateResource") -> dict:
    return healthcare(f"{STORE}/fhir/Patient/{patient_id}{f'/_history/{version}' if version else ''}".encode(),
                      action)


def deliver(world: FakeServices, event: dict, *, trust_healthcare_api: bool = False) -> list:
    parsed = parse_patient_change(event, trust_healthcare_api=trust_healthcare_api)
    return [world.matching.handle_change(change) for change in parsed]


def state(world: FakeServices) -> tuple:
    """Everything matching can change: groups, patient keys, review items, published messages."""
    return (copy.deepcopy(world.groups.docs), copy.deepcopy(world.keys.docs), copy.deepcopy(world.reviews.docs),
            list(world.publisher.sent), list(world.publisher.published))


def two_people(world: FakeServices) -> tuple[dict, dict]:
    """A (NIK_A, Ani Lestari) and B (NIK_B, Budi Santoso), both indexed, no request between them."""
    a = world.fhir.create(patient_resource(SETTINGS, "Ani Lestari", NIK_A, gender="female",
                                           birth="1990-05-15"))
    b = world.fhir.create(patient_resource(SETTINGS, "Budi Santoso", NIK_B))
    for patient in (a, b):
        deliver(world, name_only(patient["id"]))
    assert world.merge_requests_published() == []
    return a, b


# --- item 3: forged bodies --------------------------------------------------------------------------


def test_the_decoder_trusts_only_the_healthcare_api_topic_and_only_when_told_it_is_exclusive():
    body = json.dumps(patient_resource(SETTINGS, "X", NIK_A, id="a1", meta={"versionId": "3"})).encode()
    [via_relay] = parse_patient_change(relayed(body), trust_healthcare_api=True)
    assert via_relay.source is ChangeSource.FHIR_SUBSCRIPTION and not via_relay.trusted
    [shared_topic] = parse_patient_change(healthcare(body, payload="FullResource"))
    assert shared_topic.source is ChangeSource.HEALTHCARE_API and not shared_topic.trusted
    [exclusive] = parse_patient_change(healthcare(body, payload="FullResource"), trust_healthcare_api=True)
    assert exclusive.trusted and exclusive.resource is not None


def test_a_forged_relayed_body_carrying_another_patients_nik_and_name_changes_nothing(world):
    a, b = two_people(world)
    before, reads = state(world), world.fhir.requests["read"]
    forged = {**copy.deepcopy(b), "id": a["id"], "meta": {"versionId": "2"}}  # A "now" holds B's NIK and name
    [outcome] = deliver(world, relayed(json.dumps(forged).encode(), path=f"Patient/{a['id']}"))
    assert world.fhir.requests["read"] == reads + 1  # A was read from the store...
    assert outcome.result == "stale" and state(world) == before  # ...and the store says nothing changed
    assert world.merge_requests_published() == []


def test_a_forged_body_on_a_topic_others_can_publish_to_changes_nothing(world):
    """The same forgery in the Healthcare API's format, on a topic not reserved to the service agent."""
    a, b = two_people(world)
    before = state(world)
    forged = {**copy.deepcopy(b), "id": a["id"], "meta": {"versionId": "2"}}
    deliver(world, healthcare(json.dumps(forged).encode(), payload="FullResource"), trust_healthcare_api=False)
    assert state(world) == before


@pytest.mark.parametrize("forgery", ["relayed-delete-ping", "relayed-bundle-delete", "healthcare-delete"])
def test_a_forged_delete_of_a_patient_the_store_still_has_changes_nothing(world, forgery):
    a, b = two_people(world)
    before = state(world)
    event = {
        "relayed-delete-ping": relayed(b"", method="DELETE", path=f"Patient/{b['id']}"),
        "relayed-bundle-delete": relayed(json.dumps({"resourceType": "Bundle", "type": "history", "entry": [
            {"fullUrl": f"http://x/fhir/Patient/{b['id']}", "request": {"method": "DELETE"}}]}).encode()),
        "healthcare-delete": name_only(b["id"], action="DeleteResource"),
    }[forgery]
    [outcome] = deliver(world, event)
    assert outcome.result == "stale" and state(world) == before
    assert b["id"] in world.keys.docs


def test_a_delete_the_store_confirms_removes_the_patient(world):
    a, b = two_people(world)
    world.fhir.delete("Patient", b["id"])
    [outcome] = deliver(world, relayed(b"", method="DELETE", path=f"Patient/{b['id']}"))
    assert outcome.result == "deleted" and b["id"] not in world.keys.docs


def test_a_forged_huge_version_is_never_stored_and_later_real_updates_still_count(world):
    a, b = two_people(world)
    forged = {**world.fhir.read("Patient", a["id"]), "meta": {"versionId": "999999"}}
    deliver(world, relayed(json.dumps(forged).encode(), path=f"Patient/{a['id']}"))
    assert world.keys.get(a["id"]).version == "1"

    # A real update: A's NIK is corrected to B's (the same person registered twice): it must merge.
    corrected = world.fhir.read("Patient", a["id"])
    corrected["identifier"] = [{"system": SETTINGS.nik_system, "value": NIK_B}]
    corrected["name"], corrected["gender"] = [{"text": "Budi Santoso"}], "male"
    updated = world.fhir.update(corrected)
    [outcome] = deliver(world, relayed(json.dumps(updated).encode(), path=f"Patient/{a['id']}"))
    assert outcome.result == "indexed" and world.keys.get(a["id"]).version == updated["meta"]["versionId"]
    [message] = world.merge_requests_published()
    assert {message["master"], *message["duplicates"]} == {a["id"], b["id"]}


def test_a_trusted_healthcare_body_is_indexed_without_a_read(world):
    patient = world.fhir.create(patient_resource(SETTINGS, "Ani Lestari", NIK_A, gender="female"))
    reads = world.fhir.requests["read"]
    [outcome] = deliver(world, healthcare(json.dumps(patient).encode(), payload="FullResource"),
                        trust_healthcare_api=True)
    assert outcome.result == "indexed" and world.fhir.requests["read"] == reads


# --- item 4: out-of-order deliveries ----------------------------------------------------------------


def _moved_from_a_to_b(world: FakeServices) -> tuple[dict, dict]:
    """v1 holds NIK_A, v2 NIK_B; v2 is indexed first. Returns (v1, v2)."""
    v1 = world.fhir.create(patient_resource(SETTINGS, "Budi Santoso", NIK_A))
    changed = copy.deepcopy(v1)
    changed["identifier"] = [{"system": SETTINGS.nik_system, "value": NIK_B}]
    v2 = world.fhir.update(changed)
    deliver(world, name_only(v2["id"], "2"))
    assert world.keys.get(v2["id"]).version == "2"
    return v1, v2


@pytest.mark.parametrize("late", ["trusted-full-resource", "relayed-full-resource", "name-only-versioned",
                                  "name-only", "backfill-style"])
def test_a_late_older_version_changes_nothing(world, late):
    v1, v2 = _moved_from_a_to_b(world)
    before = state(world)
    if late == "backfill-style":  # what the backfill hands over: a resource it read (trusted)
        from shared.messages import PatientChange
        world.matching.handle_change(PatientChange(v1["id"], "upsert", None, copy.deepcopy(v1),
                                                   ChangeSource.BACKFILL, trusted=True))
    else:
        event = {
            "trusted-full-resource": healthcare(json.dumps(v1).encode(), payload="FullResource"),
            "relayed-full-resource": relayed(json.dumps(v1).encode(), path=f"Patient/{v1['id']}"),
            "name-only-versioned": name_only(v1["id"], "1"),
            "name-only": name_only(v1["id"]),
        }[late]
        deliver(world, event, trust_healthcare_api=True)
    assert state(world) == before
    assert world.keys.get(v1["id"]).version == "2"


def test_a_late_older_version_without_version_ids_is_ordered_by_last_updated(world):
    """Opaque versions (the Healthcare API's) compare by meta.lastUpdated."""
    v1, v2 = _moved_from_a_to_b(world)
    opaque = {**copy.deepcopy(v1), "meta": {"versionId": "MTY4", "lastUpdated": v1["meta"]["lastUpdated"]}}
    world.keys.docs[v1["id"]]["version"] = "MTY5"  # the index holds v2 under an opaque id
    before = state(world)
    deliver(world, healthcare(json.dumps(opaque).encode(), payload="FullResource"), trust_healthcare_api=True)
    assert state(world) == before
