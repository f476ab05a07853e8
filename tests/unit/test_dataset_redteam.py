"""The red-team district (``tools/dataset/redteam.py``): seeded, truthful, its patterns there at their rates."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from shared.config import Settings
from shared.nik import parse_nik
from tools.calibration.matching_score import BABY_TWIN_CASES, EVAL_SETS
from tools.dataset.redteam import CASE_LABELS, RATES, generate

SETTINGS = Settings(environment="local")
PATIENTS = 3000


def patients_of(directory) -> dict[str, dict]:
    return {r["id"]: r for phase in ("bulk", "stream") for r in
            (json.loads(line) for line in (directory / phase / "Patient.ndjson").read_text().splitlines())}


def nik_of(resource: dict) -> str | None:
    return next((i["value"] for i in resource["identifier"] if i["system"] == SETTINGS.nik_system), None)


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    directory = tmp_path_factory.mktemp("redteam")
    truth = generate(directory, 7, PATIENTS, SETTINGS)
    return directory, truth, patients_of(directory)


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_ones(tmp_path, district):
    directory, _, _ = district
    generate(tmp_path / "again", 7, PATIENTS, SETTINGS)
    generate(tmp_path / "other", 8, PATIENTS, SETTINGS)
    for name in ("bulk/Patient.ndjson", "stream/Patient.ndjson", "ground_truth.json"):
        assert (tmp_path / "again" / name).read_bytes() == (directory / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (directory / name).read_bytes()


def test_the_ground_truth_names_every_record_once_and_is_registered_as_an_evaluation_set(district):
    _, truth, resources = district
    assert len(resources) == PATIENTS == len(truth["patients"])
    assert sorted(pid for ids in truth["persons"].values() for pid in ids) == sorted(resources)
    for pid, info in truth["patients"].items():
        assert pid in truth["persons"][info["person"]]
        assert info["case"] in CASE_LABELS
        assert info["has_nik"] == (nik_of(resources[pid]) is not None)
        if info.get("collides_with"):
            assert info["collides_with"] != info["person"] and info["collides_with"] in truth["persons"]
    assert EVAL_SETS["redteam"] == {"generator": "redteam"}
    assert {"rt-twin", "rt-child-mother-nik"} <= BABY_TWIN_CASES


def test_every_pattern_is_there_and_holds_different_people(district):
    _, truth, _ = district
    assert set(truth["cases"]) == set(CASE_LABELS)
    persons_per_case = defaultdict(set)
    for info in truth["patients"].values():
        persons_per_case[info["case"]].add(info["person"])
    # Look-alikes dominate: at least half the people belong to a look-alike pattern.
    ordinary = len(persons_per_case["rt-single"] | persons_per_case["rt-duplicate"])
    assert ordinary < len(truth["persons"]) / 2
    assert all(len(people) >= 5 for case, people in persons_per_case.items() if case != "rt-sibling-nik-typo")


def test_twins_share_birth_date_home_and_a_name_and_say_nothing_of_multiple_birth(district):
    _, truth, resources = district
    by_person = defaultdict(list)
    for pid, info in truth["patients"].items():
        if info["case"] == "rt-twin":
            by_person[info["person"]].append(resources[pid])
    assert len(by_person) >= 20
    assert all("multipleBirthInteger" not in r for records in by_person.values() for r in records)


def test_a_childs_record_carries_its_mothers_nik_with_the_childs_birth_date(district):
    _, truth, resources = district
    mother_nik = {}
    for pid, info in truth["patients"].items():
        nik = nik_of(resources[pid])
        if info["case"] == "rt-mother" and nik and "nik-digit" not in info["noise"]:
            mother_nik[info["person"]] = nik.lstrip("'")
    on_mother = [(pid, info) for pid, info in truth["patients"].items()
                 if info["case"] == "rt-child-mother-nik" and info.get("collides_with") in mother_nik
                 and not {"nik-digit", "nik-transposed"} & set(info["noise"])]
    assert len(on_mother) >= 20
    for pid, info in on_mother:
        nik = nik_of(resources[pid]).lstrip("'")
        assert nik == mother_nik[info["collides_with"]]
        born = resources[pid].get("birthDate")
        assert born is None or born[:4] >= "2020"     # a toddler, under a NIK of a woman born before 2006
        assert parse_nik(nik).birth_yy != int(born[2:4]) if born and len(born) == 10 else True


def test_one_kk_number_and_one_cadre_phone_are_on_several_people(district):
    _, truth, resources = district
    people_per_nik, people_per_phone = defaultdict(set), defaultdict(set)
    for pid, info in truth["patients"].items():
        if info["case"] == "rt-kk-member" and nik_of(resources[pid]):
            people_per_nik[nik_of(resources[pid]).lstrip("'")].add(info["person"])
        if info["case"] == "rt-cadre-phone" and resources[pid].get("telecom"):
            digits = "".join(ch for ch in resources[pid]["telecom"][0]["value"] if ch.isdigit())
            people_per_phone[digits[-9:]].add(info["person"])
    assert max(len(people) for people in people_per_nik.values()) >= 2
    assert max(len(people) for people in people_per_phone.values()) >= 4


def test_each_noise_type_is_applied_at_its_rate(district):
    _, truth, _ = district
    stats = truth["noise_stats"]
    for kind, rate in RATES.items():
        eligible, applied = stats[kind]["eligible"], stats[kind]["applied"]
        assert eligible >= 100, kind
        spread = 3 * (rate * (1 - rate) / eligible) ** 0.5 + 0.01
        assert abs(applied / eligible - rate) <= spread, kind
    labelled = sum(1 for info in truth["patients"].values() for label in info["noise"] if label in RATES)
    assert labelled == sum(s["applied"] for s in stats.values())
