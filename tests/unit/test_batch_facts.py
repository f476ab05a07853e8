"""The facts the batch backfill's keys step spools (``batch_facts``) come back by place, whole and equal,
from any range and in any order; a place nothing was spooled for raises instead of deciding without facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.patient import patient_facts
from shared.services.batch_facts import FactsReader, FactsWriter
from tools.dataset.generate import Params, generate

SETTINGS = Settings()


def test_spooled_facts_come_back_by_place(tmp_path: Path):
    generate(tmp_path / "district", Params(patients=300, seed=5, resources_per_patient=0.0), SETTINGS)
    source = NdjsonPatients(tmp_path / "district")
    expected = {}
    for number, start, end in source.ranges(20_000):           # ranges cut through lines
        with FactsWriter(tmp_path / "facts", number, start) as spool:
            for offset, patient in source.patients_in(number, start, end):
                facts = patient_facts(patient, SETTINGS)
                spool.add(offset, facts)
                expected[(number, offset)] = facts
    assert len(expected) == 300
    places = sorted(expected, key=lambda place: (place[1] * 7919) % 1000)   # any order, ranges mixed
    with FactsReader(tmp_path / "facts") as reader:
        assert list(reader.facts_at(places)) == [expected[place] for place in places]
        with pytest.raises(LookupError):
            list(reader.facts_at([(0, places[0][1] + 1)]))
