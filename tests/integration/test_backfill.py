"""Backfill sees every patient even while other writers update patients under its paging (merges do):
servers page by offset in _lastUpdated order unless told otherwise, and an update moves a record behind
the pages already read."""

import pytest

from shared.bootstrap import backfill_runs, matching_service
from shared.services.backfill import run_backfill

pytestmark = pytest.mark.fresh_fhir


def test_backfill_misses_no_patient_updated_while_it_pages(settings, fhir, firestore_db, topics):
    ids = [f"bf-{i:03d}" for i in range(30)]
    fhir.batch([{"resource": {"resourceType": "Patient", "id": pid, "active": True, "gender": "male",
                              "name": [{"text": f"Pasien {pid}"}]},
                 "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in ids])

    def touch_some(progress):
        # After each page, update three patients (as a finaliser would): in _lastUpdated order they
        # would jump behind the pages already read and be skipped.
        for pid in ids[progress.pages * 3: progress.pages * 3 + 3]:
            patient = fhir.read("Patient", pid)
            patient["active"] = True
            patient.setdefault("telecom", []).append({"system": "phone", "value": "+6281200000000"})
            fhir.update(patient, if_match=patient["meta"]["versionId"])

    progress = run_backfill(run_id="sorted", settings=settings, fhir=fhir, matching=matching_service(settings),
                            checkpoints=backfill_runs(settings), page_size=5, workers=2,
                            on_page=touch_some)
    assert progress.status == "done" and progress.patients == len(ids)
    seen = {snapshot.id for snapshot in firestore_db.collection(settings.collection("patient_keys")).stream()}
    assert seen == set(ids)
