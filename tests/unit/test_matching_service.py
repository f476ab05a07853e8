"""MatchingService orchestration over the in-memory fakes (tests/fakes.py): events in, index, review
items and published merge requests out. The same scenarios run on the emulators and the real FHIR
server in tests/integration/test_matching.py; these take milliseconds."""

from __future__ import annotations

import threading

import pytest

from shared.config import Settings
from shared.domain.group import pair_key
from shared.domain.merge_request import MergeRequest
from shared.domain.patient import blocking_token, patient_facts
from shared.messages import ForceMerge, PatientChange
from tests.fakes import FakeServices, PublishFailed, patient_resource

SETTINGS = Settings()
NIK = "3201011505900001"          # a man born 1990-05-15
OTHER_NIK = "3201011505900002"
MOTHER_NIK = "3201014103880003"   # a woman born 1988-03-01


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def as_dict(message):
    """A merge-requests message as its JSON body carries it (None stays None)."""
    return message.to_dict() if message is not None else None


def add(world: FakeServices, name: str | None, nik: str | None = NIK, **fields) -> dict:
    return world.fhir.create(patient_resource(SETTINGS, name, nik, **fields))


def event(resource: dict, *, with_version: bool = False, action: str = "upsert") -> PatientChange:
    version = resource["meta"]["versionId"] if with_version else None
    return PatientChange(resource["id"], action, version)


def nik_group(nik: str = NIK) -> str:
    return f"nik_index/{patient_facts(patient_resource(SETTINGS, 'x', nik), SETTINGS).nik_token}"


def participants(message_or_request) -> set[str]:
    if isinstance(message_or_request, MergeRequest):
        return message_or_request.participants
    return {message_or_request["master"], *message_or_request["duplicates"]}


def test_two_records_with_one_nik_give_one_published_request(world):
    first, second = add(world, "Budi Santoso"), add(world, "Tn. BUDI SANTOSO")
    assert world.matching.handle_change(event(first)).published == []
    outcome = world.matching.handle_change(event(second))

    [message] = world.merge_requests_published()
    assert outcome.published == [message["request_id"]]
    assert participants(message) == {first["id"], second["id"]}
    assert message["group"] == nik_group() and NIK not in repr(message)
    request = world.groups.get(nik_group()).request
    assert request.id == message["request_id"] and request.published and request.status == "open"
    assert world.keys.get(second["id"]).groups[0] == nik_group()


def test_redelivered_and_stale_events_publish_nothing_new(world):
    first, second = add(world, "Budi Santoso"), add(world, "Budi Santoso")
    for patient in (first, second):
        world.matching.handle_change(event(patient))
    for redelivery in (event(second), event(second, with_version=True), event(first, with_version=True),
                       PatientChange(second["id"], "upsert", None, world.fhir.read("Patient", second["id"]))):
        outcome = world.matching.handle_change(redelivery)
        assert outcome.result == "stale" and outcome.published == []
    assert len(world.merge_requests_published()) == 1


@pytest.mark.parametrize("with_version", [False, True], ids=["name-only", "versioned"])
def test_failed_publish_is_retried_by_the_redelivery_exactly_once(world, with_version):
    first, second = add(world, "Budi Santoso"), add(world, "Budi Santoso")
    world.matching.handle_change(event(first))
    world.publisher.fail_next()
    with pytest.raises(PublishFailed):
        world.matching.handle_change(event(second, with_version=with_version))
    request = world.groups.get(nik_group()).request
    assert request is not None and not request.published and world.merge_requests_published() == []

    outcome = world.matching.handle_change(event(second, with_version=with_version))
    assert outcome.published == [request.id]
    world.matching.handle_change(event(second, with_version=with_version))
    world.matching.handle_change(event(first, with_version=True))
    assert [m["request_id"] for m in world.merge_requests_published()] == [request.id]
    assert world.groups.get(nik_group()).request.published


def test_aborted_transactions_are_rerun_without_double_effects(world):
    """A group transaction may run its change more than once (contention): the result is the same."""
    first, second = add(world, "Budi Santoso"), add(world, "Budi Santoso")
    world.matching.handle_change(event(first))
    world.groups.fail_next(3, group_id=nik_group())
    world.matching.handle_change(event(second))
    [message] = world.merge_requests_published()
    assert participants(message) == {first["id"], second["id"]}
    assert world.groups.get(nik_group()).request.duplicates == message["duplicates"]


def test_concurrent_events_for_one_nik_make_one_request(world):
    names = ["Budi Santoso", "BUDI SANTOSO", "Tn. Budi Santoso", "Budi Santoso, S.Kom", "Sdr. Budi Santoso",
             "budi santoso", "Santoso Budi", "Bapak Budi Santoso"]
    patients = [add(world, name) for name in names]
    errors: list[BaseException] = []

    def deliver(patient):
        try:
            world.matching.handle_change(event(patient))
        except BaseException as error:  # noqa: BLE001 - asserted below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(p,)) for p in patients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    request = world.groups.get(nik_group()).request
    assert participants(request) == {p["id"] for p in patients}
    assert {m["request_id"] for m in world.merge_requests_published()} == {request.id}


def test_nik_change_moves_the_patient_out_of_the_old_group(world):
    first, second = add(world, "Budi Santoso"), add(world, "Budi Santoso")
    for patient in (first, second):
        world.matching.handle_change(event(patient))
    moved = world.fhir.update({**second, "identifier": [{"system": SETTINGS.nik_system, "value": OTHER_NIK}]})
    outcome = world.matching.handle_change(event(moved))

    old = world.groups.get(nik_group())
    assert second["id"] not in old.members and old.request is None
    assert second["id"] in world.groups.get(nik_group(OTHER_NIK)).members
    assert outcome.groups[0] == nik_group(OTHER_NIK) and world.keys.get(second["id"]).groups[0] == nik_group(OTHER_NIK)
    assert outcome.published == []


def test_delete_removes_the_patient_from_every_group_and_its_keys(world):
    patient = add(world, "Dewi Lestari", gender="female", nik="3201015505900002")
    world.matching.handle_change(event(patient))
    groups = world.keys.get(patient["id"]).groups
    assert len(groups) == 4   # its NIK group and three candidate blocks (birth date + sex, NIK prefix, name + year)
    world.fhir.delete("Patient", patient["id"])
    outcome = world.matching.handle_change(event(patient))       # the read answers 410: a delete
    assert outcome.result == "deleted" and sorted(outcome.groups) == sorted(groups)
    assert all(patient["id"] not in world.groups.get(g).members for g in groups)
    assert world.keys.get(patient["id"]) is None


def test_a_member_of_a_running_request_is_marked_deleted_not_removed(world):
    first, second = add(world, "Budi Santoso"), add(world, "Budi Santoso")
    for patient in (first, second):
        world.matching.handle_change(event(patient))
    [message] = world.merge_requests_published()
    assert as_dict(world.requests.claim_request(message["group"], message["request_id"])) is not None
    duplicate = message["duplicates"][0]
    world.fhir.delete("Patient", duplicate)
    world.matching.handle_change(PatientChange(duplicate, "delete"))
    group = world.groups.get(nik_group())
    assert group.members[duplicate]["status"] == "deleted"
    assert group.request.status == "running" and duplicate in group.request.duplicates


def test_a_baby_on_the_mothers_nik_never_joins_the_mothers_request(world):
    mother = add(world, "Sri Wahyuni", MOTHER_NIK, birth="1988-03-01", gender="female")
    babies = [add(world, "By. Ny. Sri Wahyuni", None, nik_ibu=MOTHER_NIK, birth="2024-02-01", gender="female",
                  multipleBirthInteger=order) for order in (1, 2)]
    again = add(world, "Sri Wahyuni", MOTHER_NIK, birth="1988-03-01", gender="female")
    for patient in (mother, *babies, again):
        world.matching.handle_change(event(patient))

    group = world.groups.get(nik_group(MOTHER_NIK))
    assert {b["id"] for b in babies} <= set(group.members)
    [message] = world.merge_requests_published()
    assert participants(message) == {mother["id"], again["id"]}
    assert all(group.members[b["id"]]["status"] not in ("duplicate", "pending", "master") for b in babies)


def test_a_nikless_record_matching_a_nik_holder_joins_the_nik_group_linked(world):
    owner = add(world, "Bambang Hartono", phone="081234567890")
    nikless = add(world, "Bambang Hartono", None, phone="0812-3456-7890")
    world.matching.handle_change(event(owner))
    outcome = world.matching.handle_change(event(nikless))

    [message] = world.merge_requests_published()
    assert message["group"] == nik_group() and message["reason"] == "demographic-match"
    assert participants(message) == {owner["id"], nikless["id"]} and outcome.published == [message["request_id"]]
    keys = world.keys.get(nikless["id"])
    assert keys.linked == [nik_group()] and nik_group() not in keys.groups
    # A delete finds the linked group through the keys too.
    world.fhir.delete("Patient", nikless["id"])
    world.matching.handle_change(PatientChange(nikless["id"], "delete"))
    assert nikless["id"] not in world.groups.get(nik_group()).members


def test_a_record_without_nik_or_birth_date_is_unmatched(world):
    lost = add(world, "Tanpa Tanggal", None, birth=None)
    outcome = world.matching.handle_change(event(lost))
    assert outcome.result == "unmatched" and outcome.groups == []
    assert world.keys.get(lost["id"]).status == "unmatched"


def test_force_merge_finds_records_under_either_nik_system(world):
    mother = add(world, "Sri Wahyuni", MOTHER_NIK, birth="1988-03-01", gender="female")
    again = add(world, "Sri Wahyuni", MOTHER_NIK, birth="1988-03-01", gender="female")
    baby = add(world, "By. Ny. Sri Wahyuni", None, nik_ibu=MOTHER_NIK, birth="2025-01-10")
    add(world, "Sri Wahyuni", "3201014103880004", birth="1988-03-01", gender="female")   # another NIK
    outcome = world.matching.force_merge(ForceMerge(nik=MOTHER_NIK, reason="ticket", requested_by="ops"))

    assert outcome.result == "done" and outcome.indexed == 3
    [message] = world.merge_requests_published()
    assert participants(message) == {mother["id"], again["id"]} and outcome.published == [message["request_id"]]
    assert baby["id"] in world.groups.get(nik_group(MOTHER_NIK)).members


def test_force_merge_with_named_patients_confirms_what_the_rules_send_to_review():
    # The rules alone (the model's automatic merges off): the model would merge this pair on its own.
    world = FakeServices(Settings(model_merge_weight=float("inf")))
    a, b = add(world, "Hendra Gunawan"), add(world, "Hendra")       # a mononym: review by the rules
    outcome = world.matching.force_merge(ForceMerge(nik=f"NIK: {NIK[:6]}.{NIK[6:]}", reason="ticket-1",
                                                    requested_by="ops@district", patient_ids=(a["id"], b["id"])))
    [message] = world.merge_requests_published()
    assert participants(message) == {a["id"], b["id"]} and message["requested_by"] == "ops@district"
    assert outcome.refused == {} and pair_key(a["id"], b["id"]) in world.groups.get(nik_group()).confirmed


def test_force_merge_of_an_invalid_or_unknown_nik(world):
    assert world.matching.force_merge(ForceMerge(nik="12345", reason="t", requested_by="ops")).result == "invalid-nik"
    outcome = world.matching.force_merge(ForceMerge(nik=NIK, reason="t", requested_by="ops"))
    assert outcome.result == "no-patients" and outcome.published == []


def test_a_confirmation_in_a_busy_demographic_block_is_refused(world):
    group = f"demographic_index/{blocking_token('1970-06-15', 'male', SETTINGS)}"
    request = {"id": "mr-open", "status": "open", "master": "x1", "duplicates": ["x2"], "published": True,
               "reason": "demographic-match", "requested_by": "matching", "evidence": {}}

    def seed(tx):
        for pid, name in (("x1", "agus salim"), ("x2", "agus salim"), ("y1", "budi hartono"), ("y2", "budi hartono")):
            tx.group.members[pid] = {"status": "duplicate" if pid == "x2" else "active", "kind": "none",
                                     "name": name, "birth_date": "1970-06-15", "gender": "male", "is_baby": False,
                                     "active": True, "golden": False, "version": "1", "score": 3.0,
                                     "corroborators": []}
        tx.group.request = MergeRequest.from_doc(request)

    world.groups.transact(group, seed)
    outcome = world.matching.confirm_group(group, ["y1", "y2"], reason="review-approved", requested_by="reviewer")
    assert outcome.refused == {"y1": "block-request-busy", "y2": "block-request-busy"}
    assert outcome.published == [] and world.merge_requests_published() == []
    stored = world.groups.get(group)
    assert stored.request.master == "x1" and stored.request.duplicates == ["x2"] and not stored.confirmed


@pytest.mark.parametrize("correction", [
    # It has a NIK of its own, two digits from the holder's (one digit apart, same name, birth date and
    # phone is a serial typo, which merges).
    {"identifier": [{"system": SETTINGS.nik_system, "value": "3201011505900027"}]},
    {"birthDate": "1991-02-03"},                                                # it was someone else
], ids=["gets-another-nik", "birth-date-corrected"])
def test_a_linked_record_that_stops_matching_leaves_the_nik_group_it_joined(world, correction):
    """PatientKeys.linked exists so that "a delete or a NIK change finds its old entries": a NIK-less
    record that joined a NIK holder's request through its demographic block, then changes so that it
    no longer matches, must leave that request (else the merge pipeline merges it into the holder)."""
    owner = add(world, "Bambang Hartono", phone="081234567890")
    nikless = add(world, "Bambang Hartono", None, phone="081234567890")
    for patient in (owner, nikless):
        world.matching.handle_change(event(patient))
    assert world.keys.get(nikless["id"]).linked == [nik_group()]

    world.fhir.update({**world.fhir.read("Patient", nikless["id"]), **correction})
    world.matching.handle_change(event(nikless))

    request = world.groups.get(nik_group()).request
    still_merged = request is not None and nikless["id"] in request.participants
    assert not still_merged, f"{nikless['id']} is still in the holder's {request.status} request {request.id}"
    assert nik_group() not in world.keys.get(nikless["id"]).linked


def test_a_namesake_one_nik_typo_away_is_read_before_the_nik_group_decides(world):
    # The NIK group decides first in an event; the block of the NIK's first 12 digits is read before it,
    # so a record whose home is a namesake's under a NIK one serial typo away is not merged on the NIK.
    home = {"address": [{"line": ["Dsn. Tegalrejo RT 1/RW 10, Ds. Margoagung"]}]}
    woman = {"birth": "1990-05-15", "gender": "female"}
    owner = add(world, "Sdri. Fatimah", "3201015505900001", **woman)
    neighbour = add(world, "Patimah", "3201015505900002", **woman, **home)
    newcomer = add(world, "Ibu Patimah", "3201015505900001", birth="1990-05-15", gender=None,
                   address=[{"line": ["Dusun Tegalrejo, Margoagung, Kec. Seyegan"]}])
    for patient in (owner, neighbour):
        world.matching.handle_change(event(patient))
    outcome = world.matching.handle_change(event(newcomer))
    assert "nik-namesake-nearby" in outcome.reviews and world.merge_requests_published() == []
