"""The matching model: batch (Splink/DuckDB predict) and incremental (the pure-Python evaluator of the
artefact) give the same match probability; the shipped default model loads and is small."""

from __future__ import annotations

import json
import time

import pytest

from shared.config import Settings
from shared.domain.patient import member_record, patient_facts
from shared.linkage.comparisons import COMPARISONS
from shared.linkage.model import MatchModel, default_model
from tools.dataset.generate import Params, generate, iter_resources

SETTINGS = Settings()


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=5, resources_per_patient=0.0), SETTINGS)
    return [(p["id"], member_record(patient_facts(p, SETTINGS)))
            for phase in ("bulk", "stream") for p in iter_resources(directory, phase, "Patient")]


def test_batch_and_incremental_give_the_same_probability(district):
    from tools.linkage.train import predict_pairs, train

    trained = train(district, "test-model", seed=3)
    batch = predict_pairs(trained.artefact, district)
    assert len(batch) > 1000
    records = dict(district)
    levels_seen = {c.name: set() for c in COMPARISONS}
    for (a, b), probability in batch.items():
        score = trained.model.score(a, records[a], b, records[b])
        assert score.match_probability == pytest.approx(probability, abs=1e-6), (a, b)
        for name, level in score.levels.items():
            levels_seen[name].add(level)
    # The pairs exercised every comparison beyond its null and else levels, the tf-adjusted exact name too.
    assert all(len(seen) >= 3 for seen in levels_seen.values()), levels_seen
    # The artefact round-trips through JSON to the same model.
    again = MatchModel.from_json(json.dumps(trained.artefact))
    assert again.weights == trained.model.weights and again.tf == trained.model.tf


def test_the_default_model_is_shipped_small_and_loads_fast():
    from importlib import resources

    text = resources.files("shared.linkage").joinpath("default_model.json").read_text()
    assert len(text.encode()) < 16_000
    started = time.perf_counter()
    model = MatchModel.from_json(text)
    assert time.perf_counter() - started < 0.05
    assert model.version == default_model().version and [c["name"] for c in json.loads(text)["comparisons"]] == [
        c.name for c in COMPARISONS]


def test_an_artefact_whose_levels_differ_from_the_code_is_refused():
    doc = json.loads(json.dumps({"format": "dedup-linkage-model/1", "version": "x", "prior_weight": -10,
                                 "comparisons": [{"name": "name", "levels": [{"label": "exact", "match_weight": 1}]}]}))
    with pytest.raises(ValueError, match="other levels"):
        MatchModel.from_json(json.dumps(doc))


def test_a_model_travels_to_a_worker_process_and_scores_the_same():
    import pickle

    model = default_model()
    copy = pickle.loads(pickle.dumps(model))
    assert copy.comparisons is model.comparisons and copy.version == model.version
    left = {"name": "siti rahayu", "birth_date": "1990-01-02", "nik_token": "t", "gender": "female",
            "phones": ["0812"], "region": "3201"}
    right = dict(left, name="siti")
    assert copy.score_rows(left, right) == model.score_rows(left, right)
