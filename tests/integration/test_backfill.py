"""The backfill's FHIR scan sees every patient even while other writers update patients under its
paging (merges do): servers page by offset in _lastUpdated order unless told otherwise, and an update
moves a record behind the pages already read. The scan sorts by _id, one page at a time or several."""

import pytest

from shared.fhir.patient_scan import FhirPatientScan

pytestmark = pytest.mark.fresh_fhir


@pytest.mark.parametrize("workers", [1, 3])
def test_the_scan_misses_no_patient_updated_while_it_pages(settings, fhir, workers):
    ids = [f"bf-{i:03d}" for i in range(30)]
    fhir.batch([{"resource": {"resourceType": "Patient", "id": pid, "active": True, "gender": "male",
                              "name": [{"text": f"Pasien {pid}"}]},
                 "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in ids])
    seen: list[str] = []
    for number, page in enumerate(FhirPatientScan(fhir, page_size=5, workers=workers).pages()):
        seen.extend(p["id"] for p in page)
        # After each page, update three patients (as a finaliser would): in _lastUpdated order they
        # would jump behind the pages already read and be skipped.
        for pid in ids[number * 3: number * 3 + 3]:
            patient = fhir.read("Patient", pid)
            patient.setdefault("telecom", []).append({"system": "phone", "value": "+6281200000000"})
            fhir.update(patient, if_match=patient["meta"]["versionId"])
    assert sorted(seen) == ids
