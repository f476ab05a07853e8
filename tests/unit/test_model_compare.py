"""The comparison `dedup model train` prints (tools/linkage/compare.py): on a generated district, the band
changes it counts from Splink's comparison levels are exactly those of scoring every candidate pair, found
here by hand from the documented keys, with the match function's evaluator under both models."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict

import pytest

from shared.config import Settings
from shared.domain.patient import member_record, patient_facts
from shared.linkage.comparisons import linkage_row
from shared.linkage.model import MatchModel, default_model
from tools.dataset.generate import Params, generate, iter_resources

SETTINGS = Settings()


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=11, resources_per_patient=0.0), SETTINGS)
    return [(p["id"], member_record(patient_facts(p, SETTINGS)))
            for phase in ("bulk", "stream") for p in iter_resources(directory, phase, "Patient")]


def candidate_pairs(records) -> set[tuple[str, str]]:
    """Same NIK, birth date + sex, NIKs one digit apart (a shared digit mask), the same name in one birth
    year, a shared phone."""
    rows = {pid: linkage_row(pid, record) for pid, record in records}
    keys = defaultdict(set)
    for pid, row in rows.items():
        if row["nik_token"]:
            keys["nik", row["nik_token"]].add(pid)
        if row["birth_date"] and row["gender"]:
            keys["born", row["birth_date"], row["gender"]].add(pid)
        for mask in row["nik_masks"] or ():
            keys["mask", mask].add(pid)
        if row["name"] and row["birth_date"]:
            keys["name-year", row["name"], row["birth_date"][:4]].add(pid)
        for phone in row["phones"] or ():
            keys["phone", phone].add(pid)
    return {pair for ids in keys.values() for pair in itertools.combinations(sorted(ids), 2)}


def test_the_band_changes_are_those_of_every_candidate_pair_scored_by_both_models(district):
    from tools.linkage.compare import compare_bands
    from tools.linkage.train import train

    trained = train(district, "candidate", seed=2)
    comparison = compare_bands(default_model(), trained.artefact, district, merge_weight=SETTINGS.model_merge_weight,
                               review_weight=SETTINGS.model_review_weight)
    rows = {pid: linkage_row(pid, record) for pid, record in district}
    new = MatchModel.from_json(json.dumps(trained.artefact))
    expected = Counter()
    for a, b in candidate_pairs(district):
        bands = [model.score_rows(rows[a], rows[b]).band(SETTINGS.model_merge_weight, SETTINGS.model_review_weight)
                 for model in (default_model(), new)]
        expected[tuple(bands)] += 1
    assert comparison.pairs == sum(expected.values()) > 1000
    assert comparison.counts == expected
    assert comparison.changed == sum(n for (before, after), n in expected.items() if before != after) > 0
    summary = comparison.as_dict()
    assert summary["model_version"] == default_model().version and sum(summary["bands"].values()) == comparison.pairs
