"""The legacy noise model and the look-alike mix (tools/dataset/noise_legacy.py, lookalike.py): each error
at about its rate and what its label says, ground truth consistent, look-alikes distinct persons, and
the default generator's output unchanged byte for byte."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from shared.config import Settings
from shared.nik import NikError, normalise_nik
from tools.dataset.generate import PHASES, Params, generate
from tools.dataset.lookalike import LOOKALIKE_CASE_LABELS
from tools.dataset.noise_legacy import RATES

SETTINGS = Settings()
# sha256 over (relative path, bytes) of every file of Params(patients=120, seed=7, resources_per_patient=2),
# computed with the generator as it was before the legacy noise and the look-alike mix existed (b5d9b95).
DEFAULT_OUTPUT_SHA256 = "8a653be7df11708aa4951d494089eab09cfbe259aa05d2e72d58605b2d488e02"


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def load(directory: Path) -> tuple[dict, dict[str, dict]]:
    truth = json.loads((directory / "ground_truth.json").read_text())
    patients = {}
    for phase in PHASES:
        path = directory / phase / "Patient.ndjson"
        if path.exists():
            for line in path.read_text().splitlines():
                patient = json.loads(line)
                patients[patient["id"]] = patient
    return truth, patients


def nik_values(patient: dict, system: str = SETTINGS.nik_system) -> list[str]:
    return [i["value"] for i in patient.get("identifier", []) if i.get("system") == system]


def kinds(labels) -> set[str]:
    return {label.split(":")[0] for label in labels}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    directory = tmp_path_factory.mktemp("legacy")
    generate(directory, Params(patients=1500, seed=4, resources_per_patient=0.0, noise="legacy"), SETTINGS)
    return load(directory)


@pytest.fixture(scope="module")
def lookalike(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lookalike")
    # The field noise keeps each person's first record canonical: the structure is visible in it.
    generate(directory, Params(patients=900, seed=5, resources_per_patient=0.0, mix="lookalike"), SETTINGS)
    return load(directory)


def test_default_output_is_byte_identical_to_before(tmp_path):
    generate(tmp_path, Params(patients=120, seed=7, resources_per_patient=2.0), SETTINGS)
    assert digest(tmp_path) == DEFAULT_OUTPUT_SHA256
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert "noise" not in truth["params"] and "noise_stats" not in truth
    assert all("noise" not in entry for entry in truth["patients"].values())


def test_legacy_and_lookalike_are_reproducible_and_differ_from_default(tmp_path):
    for name, params in (("a", Params(patients=200, seed=3, resources_per_patient=0.0, noise="legacy",
                                      mix="lookalike")),
                         ("b", Params(patients=200, seed=3, resources_per_patient=0.0, noise="legacy",
                                      mix="lookalike")),
                         ("c", Params(patients=200, seed=3, resources_per_patient=0.0))):
        generate(tmp_path / name, params, SETTINGS)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    with pytest.raises(ValueError):
        Params(noise="other")


def test_each_legacy_error_appears_at_about_its_rate(legacy):
    truth, _ = legacy
    stats = truth["noise_stats"]
    assert set(stats) == set(RATES) and truth["noise_rates"] == RATES
    labelled = Counter(label.split(":")[0] for entry in truth["patients"].values() for label in entry["noise"])
    for kind, rate in RATES.items():
        eligible, applied = stats[kind]["eligible"], stats[kind]["applied"]
        assert eligible >= 100, kind
        # within 4.5 standard deviations of a binomial draw at the declared rate
        assert abs(applied / eligible - rate) <= 4.5 * math.sqrt(rate * (1 - rate) / eligible), kind
        assert labelled[kind] == applied, kind     # every error applied is on the record's labels


def test_legacy_labels_say_what_the_records_hold(legacy):
    truth, patients = legacy
    gt = truth["patients"]
    assert set(patients) == set(gt)
    assert sorted(pid for ids in truth["persons"].values() for pid in ids) == sorted(gt)
    # a person's clean values: from their records without an error in that field
    clean_nik: dict[str, set[str]] = defaultdict(set)
    clean_birth: dict[str, set[str]] = defaultdict(set)
    for pid, entry in gt.items():
        found = kinds(entry["noise"])
        if entry["case"] not in ("nik-collision", "two-niks") and not found & {
                "nik-absent", "nik-typo", "nik-ocr", "nik-spreadsheet"}:
            clean_nik[entry["person"]].update(nik_values(patients[pid]))
        if not found & {"birthdate-missing", "birthdate-placeholder", "birthdate-day-month-swap"}:
            clean_birth[entry["person"]].add(patients[pid]["birthDate"])
    for person, niks in clean_nik.items():
        assert len(niks) <= 1, person                # unlabelled records carry the NIK as it is
    for person, births in clean_birth.items():
        assert len(births) == 1, person
    checked = Counter()
    for pid, entry in gt.items():
        patient, labels, person = patients[pid], entry["noise"], entry["person"]
        found = kinds(labels)
        niks = nik_values(patient)
        assert entry["has_nik"] == bool(niks)
        if "nik-absent" in found:
            assert not niks
        if "gender-missing" in found:
            assert "gender" not in patient
        if "birthdate-missing" in found:
            assert "birthDate" not in patient
        true_birth = next(iter(clean_birth.get(person, ())), None)
        if "birthdate-placeholder:1970" in labels:
            assert patient["birthDate"] == "1970-01-01"
        if "birthdate-placeholder:1900" in labels:
            assert patient["birthDate"] == "1900-01-01"
        if "birthdate-placeholder:jan1" in labels:
            assert patient["birthDate"][4:] == "-01-01"
        if "birthdate-day-month-swap" in found and true_birth:
            year, month, day = true_birth.split("-")
            assert patient["birthDate"] == f"{year}-{day}-{month}" and month != day
            checked["swap"] += 1
        true_nik = next(iter(clean_nik.get(person, ())), None)
        if niks and "nik-typo" in found and not found & {"nik-ocr", "nik-spreadsheet"} and true_nik \
                and entry["case"] not in ("nik-collision", "two-niks"):
            differs = [i for i in range(16) if niks[0][i] != true_nik[i]]
            assert len(differs) == 1
            assert differs[0] >= 12 if "nik-typo:serial" in labels else 6 <= differs[0] < 12
            checked["typo"] += 1
        shown = niks or nik_values(patient, SETTINGS.nik_ibu_system)   # a baby's: the mother's NIK
        if "nik-ocr" in found:
            assert any(ch in "OISBl" for ch in shown[0])
        if "nik-spreadsheet:sci" in labels:
            assert "E+" in shown[0]
        if "nik-ocr" in found or {"nik-spreadsheet:sci", "nik-spreadsheet:15-digits",
                                  "nik-spreadsheet:17-digits"} & set(labels):
            with pytest.raises(NikError):
                normalise_nik(shown[0])
        if "name-caps" in found:
            assert patient["name"][0]["text"] == patient["name"][0]["text"].upper()
        if not found & {"nik-absent", "nik-typo", "nik-ocr", "nik-spreadsheet"} and niks and true_nik \
                and entry["case"] not in ("nik-collision", "two-niks"):
            assert niks[0] == true_nik
    assert checked["swap"] > 5 and checked["typo"] > 10


def test_lookalike_people_are_distinct_persons(lookalike):
    truth, patients = lookalike
    gt = truth["patients"]
    cases = truth["cases"]
    assert set(LOOKALIKE_CASE_LABELS) <= set(cases) and set(LOOKALIKE_CASE_LABELS) <= set(truth["labels"])
    assert {"newborn-nik-ibu", "twin"} <= set(cases)
    person_of = {pid: entry["person"] for pid, entry in gt.items()}
    # each person's canonical (first) record: the field noise leaves it clean
    canonical = {ids[0]: patients[ids[0]] for ids in truth["persons"].values()}
    by_person = {person_of[pid]: record for pid, record in canonical.items()}

    twins = defaultdict(set)          # (birth date, phone or address) -> twin persons
    namesakes = defaultdict(set)      # (name, birth date, gender) -> persons
    households = defaultdict(set)     # address line -> household persons
    for pid, record in canonical.items():
        case = gt[pid]["case"]
        address = tuple(record["address"][0]["line"]) if record.get("address") else None
        if case == "twin-lookalike":
            twins[(record["birthDate"], address)].add(person_of[pid])
        if case == "namesake":
            namesakes[(record["name"][0]["text"], record["birthDate"], record["gender"])].add(person_of[pid])
        if case.startswith("household-"):
            households[address].add(person_of[pid])
    assert twins and all(len(people) == 2 for people in twins.values())
    adjacent = 0
    for people in twins.values():
        first, second = (by_person[p] for p in sorted(people))
        niks = [nik_values(first), nik_values(second)]
        if all(niks) and niks[0][0][:12] == niks[1][0][:12]:
            assert abs(int(niks[0][0][12:]) - int(niks[1][0][12:])) == 1
            adjacent += 1
    assert adjacent >= 3
    assert any(len(people) >= 2 for people in namesakes.values())
    assert sum(len(people) >= 3 for people in households.values()) >= 5
    # a relative's NIK: the owner's NIK on another member's record, who is a different person
    owner_nik = {person_of[pid]: nik_values(record)[0] for pid, record in canonical.items() if nik_values(record)}
    relatives = [pid for pid, entry in gt.items() if entry["case"] == "relative-nik"]
    assert relatives
    for pid in relatives:
        owner = gt[pid]["collides_with"]
        assert owner != person_of[pid] and normalise_nik(nik_values(patients[pid])[0]) == owner_nik[owner]
    # namesakes share a very common name on one birth date, often 1 January
    jan1 = sum(1 for key in namesakes if key[1][5:] == "01-01")
    assert 0 < jan1 < len(namesakes)


def test_lookalike_with_legacy_noise_keeps_ground_truth_consistent(tmp_path):
    generate(tmp_path, Params(patients=300, seed=2, resources_per_patient=0.0, noise="legacy", mix="lookalike"),
             SETTINGS)
    truth, patients = load(tmp_path)
    assert len(patients) == 300 == len(truth["patients"])
    assert sorted(pid for ids in truth["persons"].values() for pid in ids) == sorted(patients)
    assert truth["params"]["noise"] == "legacy" and truth["params"]["mix"] == "lookalike"
    for pid, entry in truth["patients"].items():
        assert pid in truth["persons"][entry["person"]] and isinstance(entry["noise"], list)
        assert entry["case"] in truth["labels"]
        # newborns keep their birth date: the baby rules need it
        if entry["case"] in ("newborn-nik-ibu", "twin"):
            assert date.fromisoformat(patients[pid]["birthDate"]) >= date(2025, 5, 1)
