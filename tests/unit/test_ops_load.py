"""`dedup load`: every layout it promises is read completely, in load order; what it cannot read is refused
before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.errors import NotFoundProblem, UsageProblem
from ops.load import discover, load_sources
from tests.fakes import InMemoryFhir

PATIENTS = [{"resourceType": "Patient", "id": f"p{i}", "name": [{"text": f"Pasien {i}"}]} for i in range(5)]
OBSERVATIONS = [{"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": f"Patient/p{i}"}} for i in range(5)]


def ndjson(path: Path, resources: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


def load(path: Path) -> tuple[InMemoryFhir, dict]:
    fhir = InMemoryFhir()
    summary = load_sources(discover(path), fhir, batch_size=2, workers=2)
    assert not summary.failed, summary.failed
    return fhir, dict(summary.loaded)


def assert_everything_loaded(fhir: InMemoryFhir) -> None:
    assert sorted(r["id"] for r in fhir.resources("Patient")) == [p["id"] for p in PATIENTS]
    assert sorted(r["id"] for r in fhir.resources("Observation")) == [o["id"] for o in OBSERVATIONS]


def test_flat_folder(tmp_path):
    ndjson(tmp_path / "Patient.ndjson", PATIENTS)
    ndjson(tmp_path / "Observation.ndjson", OBSERVATIONS)
    fhir, loaded = load(tmp_path)
    assert loaded == {"Patient": 5, "Observation": 5}
    assert_everything_loaded(fhir)


def test_split_and_nested_files(tmp_path):
    ndjson(tmp_path / "Patient-1.ndjson", PATIENTS[:2])
    ndjson(tmp_path / "Patient-2.ndjson", PATIENTS[2:])
    ndjson(tmp_path / "later" / "Observation.000.ndjson", OBSERVATIONS)
    fhir, _ = load(tmp_path)
    assert_everything_loaded(fhir)


def test_bulk_data_export_with_manifest(tmp_path):
    ndjson(tmp_path / "a1b2.ndjson", PATIENTS)
    ndjson(tmp_path / "c3d4.ndjson", OBSERVATIONS)
    (tmp_path / "manifest.json").write_text(json.dumps({
        "transactionTime": "2025-06-30T00:00:00Z", "request": "https://fhir.example/$export",
        "requiresAccessToken": True,
        "output": [{"type": "Patient", "url": "https://files.example/export/a1b2.ndjson"},
                   {"type": "Observation", "url": "https://files.example/export/c3d4.ndjson"}], "error": []}))
    (tmp_path / "unlisted.ndjson").write_text("{not json\n")   # not in the manifest: not read
    fhir, _ = load(tmp_path)
    assert_everything_loaded(fhir)


def test_healthcare_api_export_folder(tmp_path):
    # fhirStores.export to Cloud Storage: one file per type, named by the type, no extension.
    ndjson(tmp_path / "Patient", PATIENTS)
    ndjson(tmp_path / "Observation", OBSERVATIONS)
    fhir, _ = load(tmp_path)
    assert_everything_loaded(fhir)


def test_bundle_and_single_files(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                        for r in OBSERVATIONS + PATIENTS]}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    fhir, loaded = load(tmp_path / "bundle.json")
    assert loaded == {"Patient": 5, "Observation": 5}
    assert_everything_loaded(fhir)
    (tmp_path / "one.json").write_text(json.dumps({"resourceType": "Patient", "name": [{"text": "tanpa id"}]}))
    fhir, loaded = load(tmp_path / "one.json")
    assert loaded == {"Patient": 1} and len(fhir.resources("Patient")) == 1   # no id: created (POST)
    fhir, _ = load(ndjson(tmp_path / "x" / "Patient.ndjson", PATIENTS))
    assert len(fhir.resources("Patient")) == 5


def test_patients_before_the_resources_that_reference_them(tmp_path):
    ndjson(tmp_path / "Observation.ndjson", OBSERVATIONS)
    ndjson(tmp_path / "Patient.ndjson", PATIENTS)
    order = []
    fhir = InMemoryFhir()
    original = fhir.batch
    fhir.batch = lambda entries: (order.extend(e["resource"]["resourceType"] for e in entries), original(entries))[1]
    load_sources(discover(tmp_path), fhir, batch_size=2, workers=1)
    assert order == ["Patient"] * 5 + ["Observation"] * 5


@pytest.mark.parametrize("layout, message", [
    ({"notes.txt": "hello"}, "no FHIR data found"),
    ({"Patient.ndjson": "this is not json\n"}, "is not NDJSON of FHIR resources"),
    ({"manifest.json": json.dumps({"output": [{"type": "Patient", "url": "https://x/missing.ndjson"}]})},
     "which is not in"),
])
def test_refused_before_anything_is_written(tmp_path, layout, message):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UsageProblem, match=message):
        discover(tmp_path)


def test_a_missing_path_is_not_found(tmp_path):
    with pytest.raises(NotFoundProblem):
        discover(tmp_path / "nope")


def test_a_bad_line_later_in_a_file_is_reported_not_skipped(tmp_path):
    path = tmp_path / "Patient.ndjson"
    path.write_text(json.dumps(PATIENTS[0]) + "\n{broken\n" + json.dumps(PATIENTS[1]) + "\n")
    summary = load_sources(discover(tmp_path), InMemoryFhir())
    assert dict(summary.loaded) == {"Patient": 2}
    assert summary.failed == [{"file": str(path), "resource": None, "status": "not-json"}]
