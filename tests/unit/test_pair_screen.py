"""The pair screen the batch backfill splits a store by (``shared.domain.pair_screen``) rules out only
pairs the block's rules answer no-match for (or skip): checked against ``compare_demographic_pair`` with
the shipped model on every pair of every candidate block of a generated district, both ways round."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.pair_rules import NO_MATCH, compare_demographic_pair
from shared.domain.pair_screen import deciding_members, never_decided, screen_key
from shared.domain.patient import candidate_blocks, member_record, patient_facts
from shared.linkage.model import default_model
from tools.dataset.generate import Params, generate

SETTINGS = Settings()


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> list[list]:
    directory: Path = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=11, resources_per_patient=0.0), SETTINGS)
    members: dict[str, list] = {}
    for page in NdjsonPatients(directory).pages():
        for patient in page:
            facts = patient_facts(patient, SETTINGS)
            for block in candidate_blocks(facts, SETTINGS):
                members.setdefault(block, []).append((screen_key(facts), member_record(facts)))
    return [block for block in members.values() if len(block) > 1]


def test_a_pair_ruled_out_is_never_decided_by_the_block_rules(blocks):
    model = default_model()
    seen: Counter = Counter()
    for block in blocks:
        for i, (key_a, record_a) in enumerate(block):
            for key_b, record_b in block[:i]:
                ruled_out = never_decided(key_a, key_b, SETTINGS)
                assert ruled_out == never_decided(key_b, key_a, SETTINGS)
                same_nik = record_a["nik_token"] and record_a["nik_token"] == record_b["nik_token"]
                outcomes = {compare_demographic_pair(a, b, SETTINGS, model=model).outcome
                            for a, b in ((record_a, record_b), (record_b, record_a))}
                if ruled_out:
                    assert same_nik or outcomes == {NO_MATCH}
                seen[(ruled_out, outcomes == {NO_MATCH})] += 1
    # The district has both kinds (pairs ruled out; pairs the rules merge or review, which it keeps), and the
    # screen keeps few pairs the rules then answer no-match for.
    assert seen[(True, True)] > 300 and seen[(False, False)] > 100
    assert seen[(False, True)] < seen[(False, False)] / 5


def test_deciding_members_are_those_of_a_pair_not_ruled_out(blocks):
    for block in blocks:
        keys = [key for key, _ in block]
        expected = {n for i in range(len(keys)) for j in range(i) if not never_decided(keys[i], keys[j], SETTINGS)
                    for n in (i, j)}
        assert deciding_members(keys, SETTINGS) == expected
