"""The FEBRL benchmark converter (tools/dataset/febrl.py) and its evaluation sets: NIK layout and encoding,
typos carried from the record's own fields, ground truth from the record ids, byte-identical output,
and ``--sets febrl1`` through the offline evaluation (run once, whatever the seeds)."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.config import Settings
from shared.nik import PROVINCE_CODES, nik_consistency, parse_nik
from tools.calibration import evaluate_matching
from tools.dataset.febrl import (
    FebrlRecord,
    febrl_nik,
    febrl_patient,
    nik_serial,
    read_febrl,
    record_noise,
    region_code,
    sex_of,
)
from tools.dataset.febrl import convert as convert_febrl
from tools.dataset.generate import iter_resources

SETTINGS = Settings()
MALE = next(str(n) for n in itertools.count() if sex_of(str(n)) == "male")
FEMALE = next(str(n) for n in itertools.count() if sex_of(str(n)) == "female")


def record(entity: str, original: bool = True, **fields: str) -> FebrlRecord:
    base = {"given_name": "mitchell", "surname": "green", "postcode": "2119", "date_of_birth": "19560409",
            "soc_sec_id": "1804974"}
    kept = {k: v for k, v in {**base, **fields}.items() if v}
    return FebrlRecord(f"rec-{entity}-{'org' if original else 'dup-0'}", entity, original, None, kept)


def nik_of(resource: dict) -> str | None:
    return next((i["value"] for i in resource["identifier"] if i["system"] == SETTINGS.nik_system), None)


def patients(directory: Path) -> dict[str, dict]:
    return {p["id"]: p for phase in ("bulk", "stream") for p in iter_resources(directory, phase, "Patient")}


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(directory)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def febrl3(tmp_path_factory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("febrl3")
    return directory, convert_febrl("febrl3", directory, SETTINGS)


def test_the_nik_is_region_birth_date_with_the_sex_on_the_day_and_serial():
    man, woman = febrl_nik(record(MALE).fields, "male"), febrl_nik(record(FEMALE).fields, "female")
    # postcode 2119 -> province of digit 2, regency 11, district 19; 1956-04-09; soc_sec_id 1804974 folded:
    # 1+9, 8+7, 0+4, 4 -> 0, 5, 4, 4
    assert man == "13" + "11" + "19" + "090456" + "0544"
    assert woman == "13" + "11" + "19" + "490456" + "0544"
    decoded = parse_nik(woman)
    assert (decoded.sex, decoded.birth_day, decoded.birth_month, decoded.birth_yy) == ("female", 9, 4, 56)
    assert parse_nik(man).sex == "male"


def test_typos_in_the_record_become_typos_of_the_same_size_in_its_nik():
    original = febrl_nik(record(MALE).fields, "male")

    def digits_apart(**fields: str) -> int:
        return sum(a != b for a, b in zip(original, febrl_nik(record(MALE, **fields).fields, "male"), strict=True))

    assert digits_apart(soc_sec_id="1804975") == 1            # one digit of the id: one serial digit
    assert digits_apart(soc_sec_id="1809474") == 2            # a transposition: two digits
    assert digits_apart(date_of_birth="19560419") == 1        # one digit of the day
    assert digits_apart(postcode="2118") == 1                 # one digit of the postcode: the district
    assert digits_apart(postcode="2129") == 1                 # ... or the regency
    assert nik_serial("1804974") == "0544" and region_code("2000") == "130110"   # regency 00 does not exist


def test_a_missing_date_or_id_gives_no_nik_and_an_impossible_date_an_invalid_one():
    assert febrl_nik(record(MALE, date_of_birth="").fields, "male") is None
    assert febrl_nik(record(MALE, soc_sec_id="").fields, "male") is None
    resource, _ = febrl_patient("febrl3", record(MALE, date_of_birth="19561409"), 1, SETTINGS)
    assert "birthDate" not in resource and nik_of(resource)[6:12] == "091456"   # month 14, as written
    with pytest.raises(ValueError):
        parse_nik(nik_of(resource))


def test_sex_is_the_persons_and_fields_are_kept_as_they_are():
    dup = record(FEMALE, original=False, given_name="isabelle", surname="", address_1="gundulu place",
                 street_number="23", suburb="utakarra", state="wa")
    resource, system = febrl_patient("febrl3", dup, 7, SETTINGS)
    assert resource["gender"] == "female" and resource["birthDate"] == "1956-04-09"
    assert resource["name"] == [{"use": "official", "text": "isabelle", "given": ["isabelle"]}]
    assert resource["address"][0] == {"use": "home", "type": "physical", "line": ["23 gundulu place"],
                                      "city": "utakarra", "state": "wa", "postalCode": "2119"}
    assert resource["meta"]["source"] == f"urn:source:{system}"
    # the local identifier is positional: nothing of the record id (the truth) reaches the matcher
    assert "rec-" not in json.dumps(resource)
    assert record_noise(dup, record(FEMALE)) == ["surname-missing", "given-typo"]
    swapped = record(MALE, original=False, given_name="green", surname="mitchell", soc_sec_id="1804975")
    assert record_noise(swapped, record(MALE)) == ["ssid-typo", "names-swapped"]


def test_every_converted_nik_is_valid_and_agrees_with_its_own_record_unless_its_date_is_impossible(febrl3):
    directory, truth = febrl3
    checked = 0
    for pid, resource in patients(directory).items():
        nik = nik_of(resource)
        noise = truth["patients"][pid]["noise"]
        assert (nik is None) == ("birthdate-missing" in noise)
        if nik is None or "birthdate-invalid" in noise:
            continue
        assert len(nik) == 16 and nik.isdigit() and nik[:2] in PROVINCE_CODES
        decoded = parse_nik(nik)          # raises on a bad layout, region or date
        assert nik_consistency(decoded, resource["birthDate"], resource["gender"]) == []
        checked += 1
    assert checked > 4700


def test_the_ground_truth_follows_the_febrl_record_ids(febrl3):
    directory, truth = febrl3
    records = {r.rec_id: r for r in read_febrl("febrl3")}
    resources = patients(directory)
    assert len(resources) == len(truth["patients"]) == 5000 and len(truth["persons"]) == 2000
    by_entity = defaultdict(set)
    for rec_id, r in records.items():
        by_entity[r.entity].add(rec_id)
    for person, ids in truth["persons"].items():
        rec_ids = {truth["patients"][pid]["rec_id"] for pid in ids}
        assert rec_ids == by_entity[person.removeprefix("febrl3-")]
        assert len({resources[pid]["gender"] for pid in ids}) == 1
    pairs = sum(len(ids) * (len(ids) - 1) // 2 for ids in truth["persons"].values())
    assert pairs == 6538 and truth["cases"] == {"febrl-dup": 3000, "febrl-org": 1165, "single": 835}


def test_febrl4_is_two_systems_one_bulk_one_streamed(tmp_path):
    truth = convert_febrl("febrl4", tmp_path, SETTINGS)
    assert len(truth["persons"]) == 5000
    for ids in truth["persons"].values():
        sides = sorted((truth["patients"][pid]["source"], truth["patients"][pid]["load"]) for pid in ids)
        assert sides == [("simpus", "stream"), ("simrs", "bulk")]


def test_the_output_is_the_same_byte_for_byte(tmp_path):
    convert_febrl("febrl1", tmp_path / "a", SETTINGS)
    convert_febrl("febrl1", tmp_path / "b", SETTINGS)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_the_evaluation_runs_a_febrl_set_once_whatever_the_seeds(tmp_path, monkeypatch):
    # the command quiets the services' logs for the whole process: not for the tests that follow
    monkeypatch.setattr("shared.logging.set_level", lambda level: None)
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(evaluate_matching.app, ["--offline", "--sets", "febrl1", "--seeds", "1,2",
                                                        "--json", str(out), "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "do not apply" in result.output
    [figures] = json.loads(out.read_text())["results"]
    assert figures["set"] == "febrl1" and figures["seed"] == "fixed"
    # FEBRL 1: 500 originals with one duplicate each
    assert figures["patients"] == 1000 and figures["persons"] == 500 and figures["true_pairs"] == 500
    assert sum(figures["outcomes"].values()) == 500
    assert 0.0 <= figures["precision"] <= 1.0 and figures["recall_auto"] <= figures["recall_with_review"]
