"""Index documents stay small whatever the block size (issue 12, item 7): patients on one placeholder
birth date (legacy data's 1970-01-01) never grow a candidate block past Firestore's limits.

A block stops growing at ``block_member_cap`` (200), so five times the cap shows every document at its
largest; more patients only cost time (5,000 took minutes here and proved nothing more)."""

from __future__ import annotations

import json
import random

from shared.config import Settings
from shared.messages import PatientChange
from tests.fakes import FakeServices, patient_resource

SETTINGS = Settings()
LIMIT_BYTES = 256 * 1024   # far below Firestore's 1 MiB per document
PATIENTS = 5 * SETTINGS.block_member_cap
GIVEN = ("Siti", "Nur", "Sri", "Dewi", "Muhammad", "Ahmad", "Budi", "Agus", "Rina", "Wati")
FAMILY = ("Rahayu", "Lestari", "Santoso", "Hidayat", "Wahyuni", "Saputra", "Susanti", "", "", "")


def _sizes(world: FakeServices) -> dict[str, int]:
    return {gid: len(json.dumps(doc, default=str).encode()) for gid, doc in world.groups.docs.items()}


def test_patients_far_past_the_cap_on_one_birth_date_keep_every_document_small():
    world = FakeServices(SETTINGS)
    for i in range(PATIENTS):
        patient = world.fhir.create(patient_resource(SETTINGS, f"Pasien Nomor {i:05d} Wati", None,
                                                     birth="1970-01-01", gender="female"))
        world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    sizes = _sizes(world)
    assert sizes and max(sizes.values()) < LIMIT_BYTES, max(sizes.values())
    blocks = [doc for gid, doc in world.groups.docs.items() if gid.startswith("demographic_index/")]
    # Two blocks (birth date + sex; first name token + birth year), both at the cap.
    assert len(blocks) == 2 and all(len(b["members"]) == SETTINGS.block_member_cap for b in blocks)
    # Every patient is still indexed (keys written), none merged on a name and a placeholder date alone.
    assert world.keys.count() == PATIENTS and world.merge_requests_published() == []


def test_common_names_with_phones_far_past_the_cap_on_one_birth_date_keep_every_document_small():
    rng = random.Random(1)
    world = FakeServices(SETTINGS)
    for index in range(PATIENTS):
        name = f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}".strip()
        created = world.fhir.create(patient_resource(SETTINGS, name, birth="1970-01-01",
                                                     gender=rng.choice(("male", "female")),
                                                     phone=f"0812{index:08d}"))
        world.matching.handle_change(PatientChange(created["id"], "upsert"))
    sizes = _sizes(world)
    assert max(sizes.values()) < LIMIT_BYTES, max(sizes.values())
    # The birth date + sex and name + year blocks filled up to the cap; every patient is still indexed
    # (its own phone block holds it).
    full = [doc for doc in world.groups.docs.values() if len(doc["members"]) == SETTINGS.block_member_cap]
    assert full and world.keys.count() == PATIENTS
