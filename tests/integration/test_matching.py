"""match_patient / force_merge on the real emulators and FHIR server, with CloudEvents shaped like
functions-framework delivers Pub/Sub pushes."""

from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import uuid

import httpx
from cloudevents.http import CloudEvent
from structlog.testing import capture_logs

from functions.matching import force_merge, match_patient
from shared import bootstrap
from shared.domain.merge_request import MergeRequest
from shared.domain.patient import patient_facts

STORE = "projects/p/locations/l/datasets/d/fhirStores/s"


def push_event(data: bytes, attributes: dict, source: str = "patient-changes") -> CloudEvent:
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": uuid.uuid4().hex}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished",
                       "source": f"//pubsub.googleapis.com/projects/p/topics/{source}"},
                      {"message": message, "subscription": f"projects/p/subscriptions/{source}"})


def notify(patient_id: str, version: str | None = None, action: str = "UpdateResource") -> CloudEvent:
    name = f"{STORE}/fhir/Patient/{patient_id}" + (f"/_history/{version}" if version else "")
    return push_event(name.encode(), {"action": action, "resourceType": "Patient", "payloadType": "NameOnly",
                                      "storeName": STORE})


# Serials are handed out in turn, never twice: tests share the session's FHIR server, and a random
# serial once gave a force-merge test another test's records (a mother and her twins) on its NIK.
_SERIALS = itertools.count(random.randint(1000, 4999))


def new_nik(day: int = 15, month: int = 5, yy: int = 90, female: bool = False) -> str:
    return f"320101{day + (40 if female else 0):02d}{month:02d}{yy:02d}{next(_SERIALS):04d}"


def make_patient(fhir, settings, name, nik=None, birth="1990-05-15", gender="male", **extra) -> dict:
    resource = {"resourceType": "Patient", "active": True, "name": [{"text": name}], **extra}
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    if nik:
        resource.setdefault("identifier", []).append({"system": settings.nik_system, "value": nik})
    return fhir.create(resource)


def group_doc(firestore_db, settings, resource) -> dict:
    token = patient_facts(resource, settings).nik_token
    group = bootstrap.groups(settings).get(f"nik_index/{token}")
    return group.to_doc() if group else {}


def reviews(firestore_db, settings) -> list[dict]:
    return [s.to_dict() for s in firestore_db.collection(settings.collection("review_items")).stream()]


def test_replayed_event_publishes_one_request(settings, fhir, firestore_db, topics):
    nik = new_nik()
    first = make_patient(fhir, settings, "Budi Santoso", nik)
    second = make_patient(fhir, settings, "Tn. BUDI SANTOSO", nik)
    match_patient(notify(first["id"]))
    for _ in range(3):
        match_patient(notify(second["id"]))
    messages = topics.pull(settings.topic_merge_requests, timeout=3, count=None)
    assert len(messages) == 1
    message = messages[0]
    assert {message["master"], *message["duplicates"]} == {first["id"], second["id"]}
    assert message["group"].startswith("nik_index/") and nik not in json.dumps(message)
    doc = group_doc(firestore_db, settings, first)
    assert doc["request"]["published"] is True and doc["request"]["id"] == message["request_id"]


def test_eight_concurrent_events_for_one_nik(settings, fhir, firestore_db, topics):
    nik = new_nik()
    names = ["Budi Santoso", "BUDI SANTOSO", "Tn. Budi Santoso", "Budi Santoso, S.Kom", "Sdr. Budi Santoso",
             "budi santoso", "Santoso Budi", "Bapak Budi Santoso"]
    patients = [make_patient(fhir, settings, name, nik) for name in names]
    errors = []

    def deliver(patient):
        try:
            match_patient(notify(patient["id"]))
        except Exception as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(p,)) for p in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    doc = group_doc(firestore_db, settings, patients[0])
    request = doc["request"]
    assert {request["master"], *request["duplicates"]} == {p["id"] for p in patients}
    messages = topics.pull(settings.topic_merge_requests, timeout=3, count=None)
    assert {m["request_id"] for m in messages} == {request["id"]}
    claimed = bootstrap.merge_requests(settings).claim_request(f"nik_index/{messages[0]['nik_token']}",
                                                               request["id"])
    assert len(claimed.duplicates) == 7


def test_out_of_order_versions_keep_the_newest(settings, fhir, firestore_db, topics):
    nik = new_nik()
    patient = make_patient(fhir, settings, "Agus Wijaya", nik)
    updated = fhir.update({**patient, "name": [{"text": "Agus Wijaya Kusuma"}]})
    match_patient(push_event(json.dumps(updated).encode(), {"action": "UpdateResource", "resourceType": "Patient"}))
    match_patient(push_event(json.dumps(patient).encode(), {"action": "CreateResource", "resourceType": "Patient"}))
    match_patient(notify(patient["id"], version=patient["meta"]["versionId"]))
    member = group_doc(firestore_db, settings, patient)["members"][patient["id"]]
    assert member["version"] == updated["meta"]["versionId"]
    assert member["name"] == "agus wijaya kusuma"


def test_own_writes_update_the_index_and_start_no_work(settings, fhir, firestore_db, topics):
    nik = new_nik()
    master = make_patient(fhir, settings, "Siti Rahayu", nik, birth="1990-05-55".replace("55", "15"))
    duplicate = make_patient(fhir, settings, "SITI RAHAYU", nik)
    match_patient(notify(master["id"]))
    match_patient(notify(duplicate["id"]))
    assert len(topics.pull(settings.topic_merge_requests, timeout=3)) == 1
    merged = fhir.update({**duplicate, "active": False,
                          "link": [{"other": {"reference": f"Patient/{master['id']}"}, "type": "replaced-by"}]})
    golden = fhir.update({**master, "meta": {"tag": [{"system": settings.golden_tag_system, "code": master["id"]}]},
                          "link": [{"other": {"reference": f"Patient/{duplicate['id']}"}, "type": "replaces"}]})
    match_patient(notify(merged["id"], merged["meta"]["versionId"]))
    match_patient(notify(golden["id"], golden["meta"]["versionId"]))
    members = group_doc(firestore_db, settings, master)["members"]
    assert members[duplicate["id"]]["status"] == "merged"
    assert members[master["id"]]["status"] == "master" and members[master["id"]]["golden"]
    assert topics.pull(settings.topic_merge_requests, timeout=2, count=None) == []


def test_malformed_and_foreign_messages_are_acked(settings, topics):
    with capture_logs() as logs:
        match_patient(push_event(b"projects/p/nonsense", {"action": "CreateResource"}))
        match_patient(push_event(b"", {"source": "fhir-subscription"}))
        match_patient(push_event(b"x", {"resourceType": "Observation"}))
        force_merge(push_event(b'{"nik": "3201011505900001", "reason": ', {}, source="ops-force-merge"))
    assert [(entry["event"], entry["reason"]) for entry in logs] == [
        ("event_malformed", "bad-resource-name"), ("event_ignored", "ping"), ("event_ignored", "not-patient"),
        ("event_malformed", "bad-json")]
    assert "3201011505900001" not in repr(logs)
    assert topics.pull(settings.topic_merge_requests, timeout=2, count=None) == []


def test_delete_removes_from_index(settings, fhir, firestore_db, topics):
    nik = new_nik()
    patient = make_patient(fhir, settings, "Dewi Lestari", nik, birth="1990-05-15", gender="female")
    match_patient(notify(patient["id"]))
    assert patient["id"] in group_doc(firestore_db, settings, patient)["members"]
    match_patient(notify(patient["id"], action="DeleteResource"))  # the store still has it: not believed
    assert patient["id"] in group_doc(firestore_db, settings, patient)["members"]
    httpx.delete(f"{settings.fhir_base_url}/Patient/{patient['id']}", timeout=30).raise_for_status()
    match_patient(notify(patient["id"], action="DeleteResource"))
    assert patient["id"] not in group_doc(firestore_db, settings, patient)["members"]
    keys = firestore_db.collection(settings.collection("patient_keys")).document(patient["id"]).get()
    assert not keys.exists


def test_hard_cases(settings, fhir, firestore_db, topics):
    # mistyped NIK colliding with the owner's: review, no merge
    nik = new_nik()
    owner = make_patient(fhir, settings, "Bambang Hartono", nik)
    collider = make_patient(fhir, settings, "Yusuf Maulana", nik)
    # baby on the mother's NIK, and twins on it
    mother_nik = new_nik(day=1, month=3, yy=88, female=True)
    mother = make_patient(fhir, settings, "Sri Wahyuni", mother_nik, birth="1988-03-01", gender="female")
    babies = [make_patient(fhir, settings, "By. Ny. Sri Wahyuni", None, birth="2024-02-01", gender="female",
                           multipleBirthInteger=order,
                           identifier=[{"system": settings.nik_ibu_system, "value": mother_nik}])
              for order in (1, 2)]
    # no NIK, no birth date: unmatched; a NIK-less record of the owner with the same phone: merge request
    lost = make_patient(fhir, settings, "Tanpa Tanggal", None, birth=None)
    phone = [{"system": "phone", "value": f"0812{random.randint(10**7, 10**8 - 1)}"}]
    fhir.update({**owner, "telecom": phone})
    owner = fhir.read("Patient", owner["id"])
    nikless = make_patient(fhir, settings, "Bambang Hartono", None, telecom=phone)
    for patient in (owner, collider, mother, *babies, lost, nikless):
        match_patient(notify(patient["id"]))

    items = {(tuple(i["patient_ids"]), i["reason"]) for i in reviews(firestore_db, settings)}
    assert (tuple(sorted((owner["id"], collider["id"]))), "nik-conflict") in items
    messages = topics.pull(settings.topic_merge_requests, timeout=3, count=None)
    merged = {pid for m in messages for pid in (m["master"], *m["duplicates"])}
    assert merged == {owner["id"], nikless["id"]}
    assert messages[0]["reason"] == "demographic-match"
    mother_doc = group_doc(firestore_db, settings, mother)
    assert {mother["id"], *(b["id"] for b in babies)} <= set(mother_doc["members"])
    assert mother_doc.get("request") is None
    keys = firestore_db.collection(settings.collection("patient_keys")).document(lost["id"]).get().to_dict()
    assert keys["status"] == "unmatched"


def test_force_merge_indexes_from_fhir_and_honours_confirmation(settings, fhir, firestore_db, topics):
    nik = new_nik()
    a = make_patient(fhir, settings, "Hendra Gunawan", nik)
    # Names scoring 72 under one NIK: the rules send it to review and the model does not merge a name it
    # finds only "medium" similar under one NIK (a mononym, the former case here, is now merged by the model).
    b = make_patient(fhir, settings, "Hendri Gunadi", nik)
    mother_nik = new_nik(day=1, month=3, yy=88, female=True)
    make_patient(fhir, settings, "Sri Wahyuni", mother_nik, birth="1988-03-01", gender="female")
    command = {"nik": nik, "reason": "ticket-1", "requested_by": "ops@district", "patient_ids": [a["id"], b["id"]]}
    force_merge(push_event(json.dumps(command).encode(), {}, source="ops-force-merge"))
    messages = topics.pull(settings.topic_merge_requests, timeout=3)
    assert len(messages) == 1
    assert {messages[0]["master"], *messages[0]["duplicates"]} == {a["id"], b["id"]}
    assert messages[0]["requested_by"] == "ops@district"
    doc = group_doc(firestore_db, settings, a)
    assert "|".join(sorted((a["id"], b["id"]))) in doc["confirmed"]


def test_approving_a_pair_in_a_busy_demographic_block_is_refused(settings, fhir, firestore_db, topics):
    """A birth-date/gender block holds different people: its open request (one person's merge) must
    never absorb a second pair a reviewer approves; the approval waits until that merge is done."""
    from shared.bootstrap import matching_service

    service = matching_service(settings)
    group = "demographic_index/block-under-test"
    request = {"id": "mr-open", "status": "open", "master": "x1", "duplicates": ["x2"], "published": True,
               "reason": "demographic-match", "requested_by": "matching", "evidence": {}}

    def seed(tx):
        for pid, name in (("x1", "agus salim"), ("x2", "agus salim"), ("y1", "budi hartono"), ("y2", "budi hartono")):
            tx.group.members[pid] = {"status": "duplicate" if pid == "x2" else "active", "kind": None, "name": name,
                                   "birth_date": "1970-06-15", "gender": "male", "is_baby": False, "active": True,
                                   "golden": False, "version": "1", "score": 3.0, "corroborators": []}
        tx.group.request = MergeRequest.from_doc(request)

    bootstrap.groups(settings).transact(group, seed)
    outcome = service.confirm_group(group, ["y1", "y2"], reason="review-approved", requested_by="reviewer")
    assert outcome.refused == {"y1": "block-request-busy", "y2": "block-request-busy"}
    assert outcome.published == []
    stored = bootstrap.groups(settings).get(group)
    assert stored.request.master == "x1" and stored.request.duplicates == ["x2"]


def test_force_merge_finds_records_under_either_nik_system(settings, fhir, firestore_db, topics):
    """The NIK's own records and a newborn recorded on it as its mother's NIK are both indexed (one
    search covers both identifier systems); the newborn is never merged into the mother."""
    from shared.bootstrap import matching_service
    from shared.messages import ForceMerge

    mother_nik = new_nik(day=1, month=3, yy=88, female=True)
    mother = make_patient(fhir, settings, "Sri Wahyuni", mother_nik, birth="1988-03-01", gender="female")
    again = make_patient(fhir, settings, "Sri Wahyuni", mother_nik, birth="1988-03-01", gender="female")
    baby = make_patient(fhir, settings, "By. Ny. Sri Wahyuni", birth="2025-01-10", gender="male",
                        identifier=[{"system": settings.nik_ibu_system, "value": mother_nik}])
    outcome = matching_service(settings).force_merge(ForceMerge(nik=mother_nik, reason="t", requested_by="ops"))
    assert outcome.indexed == 3
    messages = topics.pull(settings.topic_merge_requests, timeout=3)
    assert len(messages) == 1
    assert {messages[0]["master"], *messages[0]["duplicates"]} == {mother["id"], again["id"]}
    assert baby["id"] in group_doc(firestore_db, settings, mother)["members"]


def test_firestore_writes_a_change_that_only_adds_evidence_to_the_open_request(settings, firestore_db):
    # A cross-block match of a record already in the request adds only an evidence entry: the adapter's
    # before/after comparison must see it (it once shared the evidence list with the group and lost it).
    from shared.domain.merge_request import RequestPlan

    groups = bootstrap.groups(settings)
    group_id = f"nik_index/{uuid.uuid4().hex}"
    first = {"pairs": [{"patients": ["a", "b"], "rule": "nik-match"}]}
    cross = {"pairs": [{"patients": ["b", "c"], "rule": "model-match"}]}

    def seed(tx):
        tx.group.members.update({pid: {"status": "active"} for pid in "abc"})
        tx.group.open_request(RequestPlan("a", ("b", "c"), "nik-match", "matching", first))

    groups.transact(group_id, seed)
    groups.transact(group_id, lambda tx: tx.group.open_request(
        RequestPlan("a", ("c",), "demographic-match", "matching", cross)))
    assert groups.get(group_id).request.evidence["joined"] == [cross]
