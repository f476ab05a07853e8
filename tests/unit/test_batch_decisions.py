"""The batch backfill decides exactly as the incremental path: on a generated district (seed 11), the
batch's in-memory decisions and the per-patient path (``MatchingService`` over the test fakes, one
patient at a time, requests published once all are indexed, as a per-patient backfill did) give the
same groups, patient keys, review items and merge requests, document by document and pair by pair;
with the pairs scored in bulk by Splink on DuckDB first (the default engine) as without."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.patient import patient_facts
from shared.linkage.model import default_model
from shared.messages import PatientChange
from shared.services.batch_decide import decide, matching_in_memory, open_requests
from shared.services.batch_score import score_store, scores_table
from tests.fakes import FakeServices, InMemoryFhir
from tools.dataset.generate import Params, generate

SETTINGS = Settings()
STAMPS = ("updated_at", "created_at", "closed_at")


def _bare(doc: dict) -> dict:
    """A document without the times it was written at (a group's request too)."""
    bare = {k: v for k, v in doc.items() if k not in STAMPS}
    if bare.get("request"):
        bare["request"] = _bare(bare["request"])
    return bare


def _pairs(groups_of_ids) -> set[tuple[str, str]]:
    return {tuple(sorted((a, b))) for ids in groups_of_ids for a in ids for b in ids if a < b}


@pytest.mark.parametrize("engine", [None, "duckdb"])
def test_batch_and_incremental_make_the_same_decisions(tmp_path: Path, engine: str | None):
    generate(tmp_path, Params(patients=1500, seed=11, resources_per_patient=0.0), SETTINGS)
    fhir = InMemoryFhir()
    for page in NdjsonPatients(tmp_path).pages():
        for patient in page:
            fhir.update(patient)
    stored = fhir.resources("Patient")  # with meta.versionId/lastUpdated, as a scan reads them

    # Both know the store's records before deciding (the batch from its facts, ``decide``): a rival
    # identity later in the order counts as one earlier (``shared.domain.rival_identity``).
    incremental = FakeServices(SETTINGS, fhir)
    incremental.matching.expect(patient_facts(patient, SETTINGS) for patient in stored)
    for patient in stored:
        incremental.matching.handle_change(PatientChange(patient["id"], "upsert"), publish=False)
    incremental.matching.publish_pending(list(incremental.groups.docs))

    pages = [stored[i:i + 100] for i in range(0, len(stored), 100)]
    scores = None
    if engine:
        from shared.adapters.splink_scoring import SplinkScoring

        scoring = SplinkScoring(engine)
        score_store(pages, matching_in_memory(SETTINGS, MemoryIndex()), SETTINGS, scoring, tmp_path / "scores")
        scores = scores_table(scoring, tmp_path / "scores")
    index = MemoryIndex()
    model = default_model().with_scores(scores) if scores is not None else None
    decisions = decide(pages, matching_in_memory(SETTINGS, index, model=model),
                       facts=[[patient_facts(patient, SETTINGS) for patient in page] for page in pages])
    if scores is not None:   # the engine answered (nearly) every question the rules asked the model
        assert scores.hits > 100 and scores.misses == 0, (scores.hits, scores.misses)
    assert decisions.patients == len(stored)

    batch_groups = {gid: _bare(g.to_doc()) for gid, g in index.groups.groups.items()}
    live_groups = {gid: _bare(doc) for gid, doc in incremental.groups.docs.items()}
    # Requests: the incremental path published and marked them; the batch publishes after writing.
    for doc in live_groups.values():
        if doc.get("request"):
            doc["request"]["published"] = False
    assert batch_groups.keys() == live_groups.keys()
    differ = [gid for gid in batch_groups if batch_groups[gid] != live_groups[gid]]
    assert differ == []

    assert {pid: _bare(k.to_doc()) for pid, k in index.keys.keys.items()} == {
        pid: _bare(doc) for pid, doc in incremental.keys.docs.items()}
    assert {rid: _bare(item.to_doc()) for rid, item in index.reviews.items.items()} == {
        rid: _bare(doc) for rid, doc in incremental.reviews.docs.items()}

    sent = incremental.merge_requests_published()
    planned = open_requests(index.groups.groups.values())
    assert sorted(r.id for _, r in planned) == sorted(m["request_id"] for m in sent)
    assert _pairs([r.master, *r.duplicates] for _, r in planned) == _pairs(
        [m["master"], *m["duplicates"]] for m in sent)
    assert len(planned) > 50 and len(index.reviews.items) > 20   # the seed has merges and reviews to compare
