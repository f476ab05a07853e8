"""Batch scoring (Splink's ``predict`` on DuckDB, the backfill's default engine) and the incremental path
(the pure-Python evaluator of the same model JSON) give every candidate pair the same levels, weights and
match probability (within 1e-9), in either order; the score table answers with exactly what the engine
computed, and only for the records it scored."""

from __future__ import annotations

import pytest

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.splink_scoring import SplinkScoring
from shared.config import Settings
from shared.linkage.comparisons import COMPARISONS
from shared.linkage.model import default_model
from shared.linkage.scores import pack_levels, unpack_levels
from shared.services.batch_decide import matching_in_memory
from shared.services.batch_score import feature_rows, score_store, scores_table
from tools.dataset.generate import Params, generate, iter_resources

SETTINGS = Settings()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=1500, seed=5, resources_per_patient=0.0), SETTINGS)
    patients = [p for phase in ("bulk", "stream") for p in iter_resources(directory, phase, "Patient")]
    engine, out = SplinkScoring("duckdb"), directory / "scores"
    summary = score_store([patients], matching_in_memory(SETTINGS, MemoryIndex()), SETTINGS, engine, out)
    return engine, out, summary, patients


def test_splink_and_the_python_evaluator_agree_on_every_pair(scored):
    engine, out, summary, _ = scored
    model = default_model()
    rows = {row["unique_id"]: row for row in engine.rows(out)}
    pairs = list(engine.pairs(out))
    assert summary.pairs == len(pairs) > 1000
    levels_seen = {c.name: set() for c in COMPARISONS}
    for id_l, id_r, packed, weight, probability, _ in pairs:
        for left, right in ((rows[id_l], rows[id_r]), (rows[id_r], rows[id_l])):
            score = model.score_rows(left, right)
            assert score.match_probability == pytest.approx(probability, abs=1e-9), (id_l, id_r)
            assert score.match_weight == pytest.approx(weight, abs=1e-9), (id_l, id_r)
            assert list(score.levels.values()) == [
                model.labels[c.name][i] for c, i in zip(COMPARISONS, unpack_levels(packed))]
        for name, level in score.levels.items():
            levels_seen[name].add(level)
    # The pairs reach every comparison beyond its null and else levels, the tf-adjusted exact name too.
    assert all(len(seen) >= 3 for seen in levels_seen.values()), levels_seen


def test_the_score_table_answers_what_the_engine_computed(scored):
    engine, out, _, patients = scored
    table = scores_table(engine, out)
    model, looked_up = default_model(), default_model().with_scores(table)
    rows = {row["unique_id"]: row for row in engine.rows(out)}
    for id_l, id_r, *_ in list(engine.pairs(out))[:300]:
        direct, found = model.score_rows(rows[id_l], rows[id_r]), looked_up.score_rows(rows[id_l], rows[id_r])
        assert found.levels == direct.levels and found.match_probability == pytest.approx(direct.match_probability,
                                                                                         abs=1e-9)
        assert found.weights == pytest.approx(direct.weights, abs=1e-9)
        assert found.evidence()["comparisons"] == direct.evidence()["comparisons"]
    assert table.hits == 300 and table.misses == 0
    # A record that changed since it was scored is not found: the evaluator scores it.
    id_l, id_r, *_ = next(engine.pairs(out))
    changed = {**rows[id_l], "phones": ["phone:other"]}
    looked_up.score_rows(changed, rows[id_r])
    assert table.misses == 1


def test_blocks_are_the_incremental_paths_groups_and_capped_like_the_index(scored):
    _, _, _, patients = scored
    matching = matching_in_memory(SETTINGS, MemoryIndex())
    rows = feature_rows([patients], matching, SETTINGS)
    assert [row["blocks"] for row in rows[:50]] == [matching.groups_of(p) for p in patients[:50]]
    capped = feature_rows([patients], matching, SETTINGS.model_copy(update={"block_member_cap": 2}))
    per_block: dict[str, int] = {}
    for row in capped:
        for block in row["blocks"]:
            per_block[block] = per_block.get(block, 0) + 1
    assert max(n for b, n in per_block.items() if b.startswith("demographic_index/")) == 2


def test_levels_pack_and_unpack():
    levels = [len(c.levels) - 1 for c in COMPARISONS]
    assert unpack_levels(pack_levels(levels)) == levels


def test_the_scoring_engines_duckdb_is_bounded_by_the_settings(tmp_path):
    """DuckDB's own memory limit is 80 % of the machine's; the backfill's is the setting, with its spill."""
    from shared.adapters.splink_scoring import connection
    from shared.bootstrap import scoring_engine
    from shared.config import Settings

    engine = scoring_engine("duckdb", None, Settings(duckdb_memory_limit="300MB",
                                                     duckdb_temp_directory=str(tmp_path / "spill")))
    assert (engine.memory_limit, engine._spill(tmp_path / "scores")) == ("300MB", tmp_path / "spill")
    default = scoring_engine("duckdb", None, Settings())
    assert default._spill(tmp_path / "scores") == tmp_path / "scores" / "duckdb-spill"
    con = connection(engine.memory_limit, engine._spill(tmp_path / "scores"))
    limit, spill = con.execute("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit == "286.1 MiB" and spill == str(tmp_path / "spill")
