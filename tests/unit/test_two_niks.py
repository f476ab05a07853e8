"""Two NIKs more than one digit apart on records that agree on everything else (``shared.domain.two_niks``):
a person decides (review ``two-niks-review``); a rule never merges them, and the pair is still dropped
as ``different-nik`` as soon as anything but the NIK differs. Before, every such pair was dropped: FEBRL
holds dozens of one person's records whose NIKs differ in region and serial (two typos)."""

from __future__ import annotations

import pytest

from shared.domain.pair_rules import MERGE, NO_MATCH, REVIEW, compare_demographic_pair
from shared.domain.pair_screen import never_decided, screen_key
from shared.domain.patient import patient_facts
from shared.messages import PatientChange
from tests.fakes import FakeServices, InMemoryFhir
from tests.unit.test_matching import NIK_MAN, SETTINGS, patient, record

# The same man born 1990-05-15 (date part 150590) under another regency's NIK and serial.
REISSUED = "3302011505900457"
PHONE, HOME = "081234567890", "Dsn. Krajan RT 2/RW 4, Ds. Sukamaju"


def _budi(pid: str, nik: str, **changes) -> dict:
    return patient(pid, **{"name": "Budi Santoso", "nik": nik, "phone": PHONE, "address": HOME, **changes})


def _decide(a: dict, b: dict, **options):
    decision = compare_demographic_pair(record(a), record(b), SETTINGS, **options)
    return decision.outcome, decision.reason


def test_two_niks_on_records_that_agree_on_everything_else_go_to_review():
    assert _decide(_budi("a", NIK_MAN), _budi("b", REISSUED)) == (REVIEW, "two-niks-review")
    assert _decide(_budi("b", REISSUED), _budi("a", NIK_MAN)) == (REVIEW, "two-niks-review")


@pytest.mark.parametrize("changes", [
    {"name": "Budi Santosa"},                          # a near name: a sibling, or a spelling a person reads
    {"birth": "1990-01-01", "nik_date": "010190"},     # the 1 January placeholder namesakes share
    {"phone": "089876543210", "address": "Jl. Merdeka 5, Ds. Karanganyar"},   # another household
    {"gender": None},                                  # sex not stated (filled from the NIK is no evidence)
])
def test_anything_else_that_differs_keeps_the_pair_apart(changes):
    nik_date = changes.pop("nik_date", None)
    other = REISSUED if nik_date is None else REISSUED[:6] + nik_date + REISSUED[12:]
    first = NIK_MAN if nik_date is None else NIK_MAN[:6] + nik_date + NIK_MAN[12:]
    kept = {k: v for k, v in changes.items() if k in ("birth",)}
    assert _decide(_budi("a", first, **kept), _budi("b", other, **changes)) == (NO_MATCH, "different-nik")


def test_a_person_confirms_the_pair_and_no_rule_merges_it_alone():
    assert _decide(_budi("a", NIK_MAN), _budi("b", REISSUED), confirmed=True) == (MERGE, "human-confirmed")
    assert _decide(_budi("a", NIK_MAN), _budi("b", REISSUED), rejected=True) == (NO_MATCH, "do-not-match")
    twins = _decide(_budi("a", NIK_MAN, multiple=1), _budi("b", REISSUED, multiple=2))
    assert twins == (NO_MATCH, "twins")


def test_the_batch_screen_keeps_the_pair_and_still_drops_other_names():
    same = [screen_key(patient_facts(_budi(pid, nik), SETTINGS)) for pid, nik in (("a", NIK_MAN), ("b", REISSUED))]
    assert not never_decided(*same, SETTINGS)
    other = screen_key(patient_facts(_budi("c", REISSUED, name="Agus Salim"), SETTINGS))
    assert never_decided(same[0], other, SETTINGS)


def test_the_matching_service_opens_one_review_item_and_no_merge():
    fhir = InMemoryFhir()
    for resource in (_budi("a", NIK_MAN), _budi("b", REISSUED)):
        fhir.update(resource)
    world = FakeServices(SETTINGS, fhir)
    for pid in ("a", "b"):
        world.matching.handle_change(PatientChange(pid, "upsert"))
    items = world.reviews.pending()
    assert [(item.reason, sorted(item.patient_ids)) for item in items] == [("two-niks-review", ["a", "b"])]
    assert world.merge_requests_published() == []
