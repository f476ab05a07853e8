"""The store split into parts that share no group, decided in worker processes (``batch_parts``), gives
exactly the documents one pass over the whole store gives: over an empty index and over one that holds
part of the store already; the parts keep components whole, and an index scoped to a part refuses any
other group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.adapters.memory_index import MemoryIndex, OutsideScope
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.group import Group
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.ports.index_bulk import StoredDoc
from shared.services.batch_decide import decide, matching_in_memory
from shared.services.batch_files import KINDS, DecisionFiles, changed_documents
from shared.services.batch_parts import ParallelDecide, split
from tools.dataset.generate import Params, generate

SETTINGS = Settings()
STAMP = "2026-01-01T00:00:00+00:00"
TIMES = ("created_at", "updated_at", "closed_at")   # when the domain made a document: not a decision


def _bare(value):
    if isinstance(value, dict):
        return {k: _bare(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_bare(v) for v in value]
    return value


def _lines(kind_lines) -> dict[str, list]:
    found: dict[str, list] = {kind: [] for kind in KINDS}
    for kind, line in kind_lines:
        found[kind].append(_bare(json.loads(json.dumps(line))))   # as read back from a file
    return {kind: sorted(lines, key=json.dumps) for kind, lines in found.items()}


def _one_pass(source: NdjsonPatients, stored: list[StoredDoc]) -> dict[str, list]:
    index = MemoryIndex()
    for doc in stored:
        if doc.collection == "patient_keys":
            index.keys.load(PatientKeys.from_doc(doc.doc_id, doc.data))
        elif doc.collection == "review_items":
            index.reviews.load(ReviewItem.from_doc(doc.doc_id, doc.data))
        else:
            index.groups.load(Group.from_doc(f"{doc.collection}/{doc.doc_id}", doc.data))
    decide(source.pages(), matching_in_memory(SETTINGS, index))
    return _lines(changed_documents(index, {(d.collection, d.doc_id): d for d in stored}, STAMP))


def _in_parts(source: NdjsonPatients, stored: list[StoredDoc], out: Path) -> dict[str, list]:
    # Small ranges and parts: many of each, ranges cut through lines.
    parallel = ParallelDecide(SETTINGS, source, workers=2, range_bytes=50_000, part_patients=40)
    parallel.run(stored, out, STAMP)
    files = DecisionFiles(out)
    return _lines((kind, json.loads(line)) for kind in KINDS for line in files.lines(kind))


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=11, resources_per_patient=0.0), SETTINGS)
    return directory


def test_parts_decide_as_one_pass_over_an_empty_index(district, tmp_path):
    source = NdjsonPatients(district)
    expected = _one_pass(source, [])
    assert len(expected["groups"]) > 1000 and len(expected["outbox"]) > 50 and len(expected["review_items"]) > 20
    assert _in_parts(source, [], tmp_path / "parts") == expected


def test_parts_decide_as_one_pass_over_a_stored_index(district, tmp_path):
    # The index holds the first half of the patients' decisions; the run reads them all.
    patients = [p for page in NdjsonPatients(district).pages() for p in page]
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients[:750]))
    first = _one_pass(NdjsonPatients(tmp_path / "half"), [])
    stored = [StoredDoc(collection, doc_id, doc, "2026-01-01T00:00:00.000001Z")
              for kind in ("groups", "patient_keys", "review_items") for collection, doc_id, doc, _ in first[kind]]
    source = NdjsonPatients(district)
    expected = _one_pass(source, stored)
    assert any(line[3] for line in expected["groups"]), "some groups are updates of stored ones"
    assert _in_parts(source, stored, tmp_path / "parts") == expected


def test_parts_keep_components_whole(district):
    matching = matching_in_memory(SETTINGS, MemoryIndex())
    patients = [(0, n, p["id"], matching.groups_of(p))
                for n, p in enumerate(p for page in NdjsonPatients(district).pages() for p in page)]
    parts = split(patients, [], part_patients=40)
    assert sum(len(part.places) for part in parts) == len(patients) and len(parts) > 10
    owner: dict[str, int] = {}
    for part in parts:
        for group in part.groups:
            assert owner.setdefault(group, part.number) == part.number, f"{group} in two parts"
        assert part.places == sorted(part.places)   # the source's order within a part


def test_an_index_scoped_to_a_part_refuses_other_groups():
    index = MemoryIndex(scope=frozenset({"nik_index/a"}))
    index.groups.transact("nik_index/a", lambda tx: None)
    with pytest.raises(OutsideScope):
        index.groups.transact("nik_index/b", lambda tx: None)
    with pytest.raises(OutsideScope):
        index.groups.get("demographic_index/c")
