"""The dataset loader against the real local FHIR server: counts per type per phase, and NIK searches."""

from __future__ import annotations

from collections import defaultdict

import pytest

from shared.nik import normalise_nik
from tools.dataset.generate import Params, generate, iter_resources
from tools.dataset.load import dataset_counts, load_dataset

# An empty server of this module's own, so the counts are exact.
pytestmark = [pytest.mark.integration, pytest.mark.fresh_fhir]


def server_count(client, resource_type: str) -> int:
    bundle = next(client.search_bundles(resource_type, {"_summary": "count"}))
    return bundle["total"]


def test_load_bulk_then_stream_counts_and_nik_search(tmp_path, fhir, settings):
    directory = tmp_path / "district"
    truth = generate(directory, Params(patients=120, seed=21, resources_per_patient=4), settings)
    counts = dataset_counts(directory)

    bulk = load_dataset(directory, fhir, only="bulk", batch_size=50, workers=3, show_progress=False)
    assert bulk.failed == []
    assert bulk.loaded == counts["bulk"]
    for resource_type, expected in counts["bulk"].items():
        assert server_count(fhir, resource_type) == expected, resource_type

    stream = load_dataset(directory, fhir, only="stream", batch_size=50, workers=3, show_progress=False)
    assert stream.failed == []
    assert stream.loaded == counts["stream"]
    for resource_type in set(counts["bulk"]) | set(counts["stream"]):
        expected = counts["bulk"].get(resource_type, 0) + counts["stream"].get(resource_type, 0)
        assert server_count(fhir, resource_type) == expected, resource_type
    assert bulk.resources_per_second > 0

    # An exact token search finds the records that store the NIK as clean digits (the noisy ones are
    # what the matcher normalises), and nothing else.
    stored = defaultdict(set)
    for phase in ("bulk", "stream"):
        for patient in iter_resources(directory, phase, "Patient"):
            for identifier in patient["identifier"]:
                if identifier["system"] == settings.nik_system:
                    stored[identifier["value"]].add(patient["id"])
    shared_niks = [value for value, ids in stored.items() if len(ids) >= 2 and value.isdigit()]
    assert shared_niks
    for value in shared_niks[:5]:
        found = {p["id"] for p in fhir.search("Patient", {"identifier": f"{settings.nik_system}|{value}"})}
        assert found == stored[value]
        people = {truth.patients[pid].person for pid in found}
        cases = {truth.patients[pid].case for pid in found}
        assert len(people) == 1 or "nik-collision" in cases

    # A mother's NIK under the nik-ibu system finds her babies, not her.
    baby = next(info for info in truth.patients.values() if info.nik_kind == "nik-ibu")
    patient = fhir.read("Patient", baby.id)
    mother_nik = [i["value"] for i in patient["identifier"] if i["system"] == settings.nik_ibu_system][0]
    found = list(fhir.search("Patient", {"identifier": f"{settings.nik_ibu_system}|{mother_nik}"}))
    assert baby.id in {p["id"] for p in found}
    assert {truth.patients[p["id"]].case for p in found} <= {"newborn-nik-ibu", "twin"}
    mothers = list(fhir.search("Patient", {"identifier": f"{settings.nik_system}|{normalise_nik(mother_nik)}"}))
    assert mothers and {truth.patients[p["id"]].case for p in mothers} == {"mother"}
