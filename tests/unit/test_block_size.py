"""Index documents stay small whatever the block size (issue 12, item 7): 5,000 patients without a NIK
on one placeholder birth date (legacy data's 1970-01-01) never grow their block past Firestore's limits."""

from __future__ import annotations

import json

from shared.config import Settings
from shared.messages import PatientChange
from tests.fakes import FakeServices, patient_resource

SETTINGS = Settings()
LIMIT_BYTES = 256 * 1024   # far below Firestore's 1 MiB per document


def test_five_thousand_patients_on_one_birth_date_keep_every_document_small():
    world = FakeServices(SETTINGS)
    for i in range(5000):
        patient = world.fhir.create(patient_resource(SETTINGS, f"Pasien Nomor {i:05d} Wati", None,
                                                     birth="1970-01-01", gender="female"))
        world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    sizes = {gid: len(json.dumps(doc, default=str).encode()) for gid, doc in world.groups.docs.items()}
    assert sizes and max(sizes.values()) < LIMIT_BYTES, max(sizes.values())
    [block] = [doc for gid, doc in world.groups.docs.items() if gid.startswith("demographic_index/")]
    assert len(block["members"]) == SETTINGS.block_member_cap
    # Every patient is still indexed (keys written), none merged on a name and a placeholder date alone.
    assert world.keys.count() == 5000 and world.merge_requests_published() == []
