"""A rival identity makes a demographic match a human decision, whatever the arrival order
(``shared.domain.rival_identity``; docs/matching.md "Rival identities")."""

from __future__ import annotations

from shared.config import Settings
from shared.domain.demographic_plan import plan_demographic_group
from shared.domain.group import Group
from shared.domain.patient import member_record, patient_facts
from shared.domain.rival_identity import rival_after_merge, rivals
from shared.messages import PatientChange
from tests.fakes import FakeServices, InMemoryFhir

SETTINGS = Settings()
PHONE = "081234567890"
TWIN_A, TWIN_B = "3310034304120001", "3310034304120002"   # one family card: serials one apart


def resource(pid: str, name: str, nik: str | None, birth_date: str = "2012-04-03", phone: str = PHONE) -> dict:
    patient = {"resourceType": "Patient", "id": pid, "name": [{"text": name}], "birthDate": birth_date,
               "gender": "female", "telecom": [{"system": "phone", "value": phone}]}
    if nik:
        patient["identifier"] = [{"system": SETTINGS.nik_system, "value": nik}]
    return patient


def record(pid: str, name: str, nik: str | None, **kwargs) -> dict:
    return {**member_record(patient_facts(resource(pid, name, nik, **kwargs), SETTINGS)), "status": "active"}


def block(**members) -> Group:
    return Group.from_doc("demographic_index/token", {"members": members, "master": None, "request": None})


def test_a_twin_later_in_the_batch_sends_the_record_to_review_instead_of_a_merge():
    # Twins "Dewi Lestari", one phone, one birth date, NIKs one serial apart; a record without a NIK
    # arrives when only the first twin is indexed. Alone it merges; with the second twin expected, a human
    # says which twin it is.
    first, newcomer = record("a", "Dewi Lestari", TWIN_A), record("x", "Dewi Lestari", None)
    alone = plan_demographic_group(block(a=first, x=newcomer), "x", SETTINGS)
    assert (alone.master, alone.duplicates) == ("a", ["x"])
    second = record("b", "Dewi Lestari", TWIN_B)
    plan = plan_demographic_group(block(a=first, x=newcomer), "x", SETTINGS, expected={"b": second})
    assert plan.master is None and plan.duplicates == []
    assert [(set(r.patient_ids), r.reason) for r in plan.reviews] == [({"a", "b", "x"}, "rival-identity")]
    assert plan.statuses["x"] == ("review", "rival-identity")


def test_a_rival_that_lives_elsewhere_counts_too():
    # The twin (or a namesake born the same day) under another NIK, with another phone: the newcomer's tie
    # to the first record is a phone, which a namesake's record without a phone cannot contradict.
    first, newcomer = record("a", "Dewi Lestari", TWIN_A), record("x", "Dewi Lestari", None)
    other = record("b", "Dewi Lestari", "3310034304120007", phone="085700000001")
    assert rivals("x", newcomer, "a", first, [("b", other)], SETTINGS) == ["b"]


def test_no_rival_without_another_identity_of_that_day_and_name():
    first, newcomer = record("a", "Dewi Lestari", TWIN_A), record("x", "Dewi Lestari", None)
    candidates = [
        ("a2", record("a2", "Dewi Lestari", TWIN_A)),                        # the same NIK: the same person
        ("c", record("c", "Dewi Lestari", TWIN_B, birth_date="2012-04-04")),  # another day
        ("d", record("d", "Sri Wahyuni", TWIN_B)),                            # another name
        ("e", record("e", "Dewi Lestari", None)),                             # no NIK: not an identity
    ]
    assert rivals("x", newcomer, "a", first, candidates, SETTINGS) == []


def test_a_nik_typo_of_the_same_person_is_no_rival():
    # The holder's own record with a typo in the serial's first digit, one household: the rules merge it with
    # the holder (``nik-one-digit-match``), so it is the same identity, not a rival.
    first, newcomer = record("a", "Dewi Lestari", TWIN_A), record("x", "Dewi Lestari", None)
    typo = record("t", "Dewi Lestari", "3310034304121001")
    assert rivals("x", newcomer, "a", first, [("t", typo)], SETTINGS) == []


def test_two_records_without_a_nik_need_two_identities_for_a_rival():
    x, y = record("x", "Dewi Lestari", None), record("y", "Dewi Lestari", None)
    one = [("a", record("a", "Dewi Lestari", TWIN_A))]
    assert rivals("x", x, "y", y, one, SETTINGS) == []
    two = [*one, ("b", record("b", "Dewi Lestari", TWIN_B))]
    assert rivals("x", x, "y", y, two, SETTINGS) == ["a", "b"]


def test_a_twin_arriving_after_the_merge_opens_a_review_item_and_undoes_nothing():
    # The record's merge into the first twin is done (``merged``: no longer a candidate of the block).
    first, second = record("a", "Dewi Lestari", TWIN_A), record("b", "Dewi Lestari", TWIN_B)
    merged = {**record("x", "Dewi Lestari", None), "status": "merged", "replaced_by": "a"}
    members = {"a": first, "b": second, "x": merged}
    assert rival_after_merge("b", second, members, SETTINGS) == [("a", "b", "x")]
    plan = plan_demographic_group(block(**members), "b", SETTINGS)
    assert ({"a", "b", "x"}, "rival-after-merge") in [(set(r.patient_ids), r.reason) for r in plan.reviews]
    assert plan.master is None and members["x"]["status"] == "merged"
    # A record of the newcomer's own NIK matching it is that person: nothing to ask.
    own = {"a": first, "x": merged, "b": record("b", "Dewi Lestari", TWIN_A)}
    assert rival_after_merge("b", own["b"], own, SETTINGS) == []


def _services(patients: list[dict]) -> FakeServices:
    fhir = InMemoryFhir()
    for patient in patients:
        fhir.update(patient)
    return FakeServices(SETTINGS, fhir)


def _merged_pairs(services: FakeServices) -> set[frozenset[str]]:
    pairs = set()
    for message in services.merge_requests_published():
        ids = [message["master"], *message["duplicates"]]
        pairs |= {frozenset((ids[0], other)) for other in ids[1:]}
    return pairs


def test_the_batch_decides_alike_in_either_order_when_it_knows_its_records():
    patients = [resource("a", "Dewi Lestari", TWIN_A), resource("x", "Dewi Lestari", None),
                resource("b", "Dewi Lestari", TWIN_B)]
    for order in (patients, patients[::-1], [patients[1], patients[0], patients[2]]):
        services = _services(order)
        services.matching.expect(patient_facts(p, SETTINGS) for p in order)
        for patient in order:
            services.matching.handle_change(PatientChange(patient["id"], "upsert"))
        assert not any("x" in pair for pair in _merged_pairs(services))
        assert any(item.reason == "rival-identity" and "x" in item.patient_ids for item in services.reviews.all())


def test_incrementally_the_later_twin_flags_the_merge_for_review():
    order = [resource("a", "Dewi Lestari", TWIN_A), resource("x", "Dewi Lestari", None),
             resource("b", "Dewi Lestari", TWIN_B)]
    services = _services(order)
    for patient in order:
        services.matching.handle_change(PatientChange(patient["id"], "upsert"))
    assert frozenset(("a", "x")) in _merged_pairs(services)   # what arrived first merged; it stays merged
    # The merge is still on its way (``duplicate``, a candidate of the block): the twin's own match with the
    # record meets the first twin as a rival (once merged, ``rival-after-merge`` asks the same question).
    flagged = [item for item in services.reviews.all() if item.reason == "rival-identity"]
    assert [set(item.patient_ids) for item in flagged] == [{"a", "b", "x"}]


def test_the_batch_backfill_tells_the_matching_its_records_before_deciding():
    from shared.adapters.memory_index import MemoryIndex
    from shared.services.batch_decide import decide, matching_in_memory

    fhir = InMemoryFhir()
    for patient in (resource("a", "Dewi Lestari", TWIN_A), resource("x", "Dewi Lestari", None),
                    resource("b", "Dewi Lestari", TWIN_B)):
        fhir.update(patient)
    stored = fhir.resources("Patient")
    index = MemoryIndex()
    decide([stored], matching_in_memory(SETTINGS, index),
           facts=[[patient_facts(patient, SETTINGS) for patient in stored]])
    requests = [g.request for g in index.groups.groups.values() if g.request]
    assert not any("x" in (r.master, *r.duplicates) for r in requests)
    assert any(item.reason == "rival-identity" for item in index.reviews.items.values())
