"""The district dataset generator: reproducible, consistent with its ground truth, every hard case present."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from shared.config import Settings
from shared.nik import nik_consistency, normalise_nik, parse_nik
from tools.dataset.generate import CASE_LABELS, PHASES, Params, generate
from tools.dataset.load import LOAD_ORDER, dataset_counts, ordered_types

SETTINGS = Settings()
SHARED_TYPES = {"Organization", "Practitioner", "Location"}


def read_dataset(directory: Path) -> dict[tuple[str, str], tuple[str, dict]]:
    """(type, id) -> (phase, resource) for every resource written."""
    resources = {}
    for phase in PHASES:
        for path in sorted((directory / phase).glob("*.ndjson")):
            for line in path.read_text(encoding="utf-8").splitlines():
                resource = json.loads(line)
                key = (resource["resourceType"], resource["id"])
                assert key not in resources, f"duplicate id {key}"
                resources[key] = (phase, resource)
    return resources


def references(node, path: str = ""):
    """(path, reference) for every Reference in a resource, paths without list indexes."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield path, node["reference"]
        for key, value in node.items():
            yield from references(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for item in node:
            yield from references(item, path)


def nik_identifiers(patient: dict, system: str) -> list[str]:
    return [i["value"] for i in patient.get("identifier", []) if i.get("system") == system]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("district")
    truth = generate(directory, Params(patients=900, seed=11, resources_per_patient=8), SETTINGS)
    ground = json.loads((directory / "ground_truth.json").read_text())
    return directory, truth, ground, read_dataset(directory)


def patients_of(resources) -> dict[str, tuple[str, dict]]:
    return {rid: value for (rtype, rid), value in resources.items() if rtype == "Patient"}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    params = Params(patients=150, seed=5, resources_per_patient=6)
    generate(tmp_path / "a", params, SETTINGS)
    generate(tmp_path / "b", params, SETTINGS)
    generate(tmp_path / "c", Params(patients=150, seed=6, resources_per_patient=6), SETTINGS)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for relative in files_a:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    assert (tmp_path / "a/ground_truth.json").read_bytes() != (tmp_path / "c/ground_truth.json").read_bytes()


def test_exact_patient_count_and_ground_truth_matches_files(dataset):
    directory, truth, ground, resources = dataset
    patients = patients_of(resources)
    assert len(patients) == 900 == len(ground["patients"])
    assert set(patients) == set(ground["patients"])
    for pid, (phase, patient) in patients.items():
        entry = ground["patients"][pid]
        assert entry["load"] == phase
        assert patient["meta"]["source"] == f"urn:source:{entry['source']}"
        assert [i["system"] for i in patient["identifier"]][0] == f"urn:source:{entry['source']}:mrn"
        assert entry["has_nik"] == bool(nik_identifiers(patient, SETTINGS.nik_system))
        assert (entry["nik_kind"] == "nik-ibu") == bool(nik_identifiers(patient, SETTINGS.nik_ibu_system))
        assert pid in ground["persons"][entry["person"]]
    assert sum(len(ids) for ids in ground["persons"].values()) == 900
    assert ground["cases"] == dict(Counter(e["case"] for e in ground["patients"].values()))
    assert ground["seed"] == 11 and ground["params"]["patients"] == 900
    # the manifest counts what is on disk
    on_disk = Counter((phase, rtype) for (rtype, _), (phase, _) in resources.items())
    assert {(p, t): n for p, types in dataset_counts(directory).items() for t, n in types.items()} == on_disk


def test_every_case_present_labelled_and_a_few_percent(dataset):
    _, _, ground, _ = dataset
    cases = ground["cases"]
    assert set(cases) == set(CASE_LABELS)
    assert set(ground["labels"]) == set(CASE_LABELS)
    for label in ("nik-collision", "newborn-nik-ibu", "newborn-own-nik", "twin", "no-nik", "no-nik-pair",
                  "no-nik-partial", "two-niks", "same-name-birthdate", "sibling"):
        assert 0 < cases[label] / 900 < 0.12, label
    bulk = sum(1 for e in ground["patients"].values() if e["load"] == "bulk")
    assert 0.6 < bulk / 900 < 0.8
    copies = Counter(len(ids) for ids in ground["persons"].values())
    assert max(copies) >= 5 and copies[1] > 0 and copies[2] > 0


def test_every_reference_resolves_within_the_phase(dataset):
    _, _, _, resources = dataset
    for (rtype, rid), (phase, resource) in resources.items():
        for path, reference in references(resource):
            target_type, target_id = reference.split("/")
            assert (target_type, target_id) in resources, f"{rtype}/{rid} {path} dangles"
            target_phase = resources[(target_type, target_id)][0]
            # bulk may only point into bulk; a streamed record may also point at bulk
            assert target_phase == "bulk" or target_phase == phase, f"{rtype}/{rid} {path}"
    for (rtype, _), (phase, _) in resources.items():
        if rtype in SHARED_TYPES:
            assert phase == "bulk"


def test_clinical_types_and_patient_references_beyond_subject(dataset):
    _, _, _, resources = dataset
    types = {rtype for rtype, _ in resources}
    clinical = types - SHARED_TYPES - {"Patient"}
    assert len(clinical) >= 15, sorted(clinical)
    assert set(ordered_types(types)) == types and all(t in LOAD_ORDER for t in types)
    patient_paths = set()
    for (rtype, _), (_, resource) in resources.items():
        for path, reference in references(resource):
            if reference.startswith("Patient/"):
                patient_paths.add(f"{rtype}.{path}")
    expected = {"Observation.performer", "Appointment.participant.actor", "Coverage.beneficiary",
                "Coverage.subscriber", "Coverage.payor", "Claim.patient", "AllergyIntolerance.asserter",
                "Immunization.patient", "Encounter.subject", "Procedure.asserter", "CarePlan.contributor",
                "DocumentReference.author", "Flag.subject", "Specimen.subject", "Condition.note.authorReference",
                "Encounter.extension.valueReference", "MedicationAdministration.performer.actor",
                "EpisodeOfCare.patient", "ImagingStudy.subject", "DiagnosticReport.subject"}
    assert expected <= patient_paths, sorted(expected - patient_paths)
    # references between clinical resources too
    assert {"Observation.encounter", "DiagnosticReport.result", "Claim.insurance.coverage",
            "MedicationAdministration.request"} <= {
        f"{rtype}.{path}" for (rtype, _), (_, r) in resources.items() for path, ref in references(r)
        if not ref.startswith(("Patient/", "Practitioner/", "Organization/", "Location/"))}


def test_nik_noise_is_recoverable_and_nik_matches_the_person(dataset):
    _, _, ground, resources = dataset
    patients = patients_of(resources)
    noisy = 0
    person_niks: dict[str, set[str]] = defaultdict(set)
    for pid, (_, patient) in patients.items():
        entry = ground["patients"][pid]
        for raw in nik_identifiers(patient, SETTINGS.nik_system):
            clean = normalise_nik(raw)
            noisy += raw != clean
            if entry["case"] != "nik-collision":
                person_niks[entry["person"]].add(clean)
            nik = parse_nik(raw)
            # a person's own NIK (and the mistyped one, which differs only in the serial) agrees with them
            assert nik_consistency(nik, patient.get("birthDate"), patient.get("gender")) == [], pid
            assert nik.province == "34" and nik.regency == "04"
        for raw in nik_identifiers(patient, SETTINGS.nik_ibu_system):
            assert parse_nik(raw).sex == "female"
    assert noisy > 20
    for person, niks in person_niks.items():
        cases = {ground["patients"][p]["case"] for p in ground["persons"][person]}
        assert len(niks) == (2 if "two-niks" in cases else 1), person


def test_hard_cases_are_what_their_labels_say(dataset):
    _, _, ground, resources = dataset
    patients = patients_of(resources)
    gt = ground["patients"]

    def clean(pid, system):
        values = nik_identifiers(patients[pid][1], system)
        return normalise_nik(values[0]) if values else None

    niks_of_person = defaultdict(set)
    for pid, entry in gt.items():
        if entry["case"] != "nik-collision" and entry["has_nik"]:
            niks_of_person[entry["person"]].add(clean(pid, SETTINGS.nik_system))
    for pid, entry in gt.items():
        if entry["case"] == "nik-collision":
            owner_niks = niks_of_person[entry["collides_with"]]
            carried = clean(pid, SETTINGS.nik_system)
            assert carried in owner_niks and entry["collides_with"] != entry["person"]
            for own in niks_of_person.get(entry["person"], ()):      # differs from the real one in the serial
                assert own != carried and own[:12] == carried[:12]
    mothers = {clean(pid, SETTINGS.nik_system) for pid, e in gt.items() if e["case"] == "mother"}
    twins_by_mother = defaultdict(dict)
    for pid, entry in gt.items():
        patient = patients[pid][1]
        if entry["case"] in ("newborn-nik-ibu", "twin"):
            assert clean(pid, SETTINGS.nik_ibu_system) in mothers
            assert patient["name"][0]["text"].upper().startswith(("BY. NY.", "BAYI NY.", "BY NY"))
            assert patient["birthDate"] >= "2025-05-01"
        if entry["case"] == "twin":
            twins_by_mother[clean(pid, SETTINGS.nik_ibu_system)].setdefault(
                patient["multipleBirthInteger"], set()).add((entry["person"], patient["birthDate"]))
        if entry["case"] == "newborn-own-nik":
            siblings = ground["persons"][entry["person"]]
            assert any(gt[other]["case"] == "newborn-nik-ibu" for other in siblings)
        if entry["case"] in ("no-nik", "no-nik-pair", "no-nik-partial"):
            assert not entry["has_nik"]
        if entry["case"] == "no-nik-partial":
            assert any(gt[o]["has_nik"] for o in ground["persons"][entry["person"]])
        if entry["case"] == "no-nik-pair":
            assert all(not gt[o]["has_nik"] for o in ground["persons"][entry["person"]])
    assert twins_by_mother
    for births in twins_by_mother.values():
        assert set(births) == {1, 2}
        (first,), (second,) = births[1], births[2]      # one baby per birth order, copies included
        assert first[0] != second[0] and first[1] == second[1]
    # same name and birth date, different people
    by_key = defaultdict(set)
    for entry in gt.values():
        if entry["case"] == "same-name-birthdate":
            person = ground["persons"][entry["person"]][0]
            canonical = patients[person][1]
            by_key[(canonical["name"][0]["text"].lower(), canonical.get("birthDate"))].add(entry["person"])
    assert any(len(people) >= 2 for people in by_key.values())
