"""Splink on Spark (pyspark, local mode) and on DuckDB score a generated district the same: the same
candidate pairs (ids), the same levels and match probabilities, and the same clusters at the auto-merge
threshold. Needs Java 17 (no stack)."""

from __future__ import annotations

import re
import time

import pytest

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.splink_scoring import SplinkScoring
from shared.config import Settings
from shared.ports.pair_scoring import EngineUnavailable
from shared.services.batch_decide import matching_in_memory
from shared.services.batch_score import feature_rows
from tools.dataset.generate import Params, generate, iter_resources

SETTINGS = Settings()


def _clusters(engine: SplinkScoring, out) -> set[frozenset[str]]:
    members: dict[str, set[str]] = {}
    for pid, cluster in engine.clusters(out).items():
        members.setdefault(cluster, set()).add(pid)
    return {frozenset(ids) for ids in members.values()}


def test_spark_and_duckdb_give_the_same_pairs_and_clusters(tmp_path):
    generate(tmp_path / "district", Params(patients=400, seed=5, resources_per_patient=0.0), SETTINGS)
    patients = [p for phase in ("bulk", "stream") for p in iter_resources(tmp_path / "district", phase, "Patient")]
    matching = matching_in_memory(SETTINGS, MemoryIndex())
    rows = feature_rows([patients], matching, SETTINGS)
    artefact = matching.model.artefact

    duckdb, spark = SplinkScoring("duckdb"), SplinkScoring("spark", "local[2]")
    by_duckdb = duckdb.score([rows], artefact, tmp_path / "duckdb", SETTINGS.model_merge_weight)
    started = time.monotonic()
    try:
        by_spark = spark.score([rows], artefact, tmp_path / "spark", SETTINGS.model_merge_weight)
    finally:
        spark.close()
    spark_seconds = time.monotonic() - started

    pairs_duckdb = {(a, b): rest for a, b, *rest in duckdb.pairs(tmp_path / "duckdb")}
    pairs_spark = {(a, b): rest for a, b, *rest in spark.pairs(tmp_path / "spark")}
    assert by_spark.pairs == by_duckdb.pairs == len(pairs_duckdb) > 100
    assert pairs_spark.keys() == pairs_duckdb.keys()
    for pair, (levels, weight, probability, tf_weight) in pairs_duckdb.items():
        s_levels, s_weight, s_probability, s_tf = pairs_spark[pair]
        assert s_levels == levels, pair
        assert s_probability == pytest.approx(probability, abs=1e-9) and s_weight == pytest.approx(weight, abs=1e-9)
        assert s_tf == pytest.approx(tf_weight, abs=1e-9)
    assert by_duckdb.clusters > 10
    assert _clusters(spark, tmp_path / "spark") == _clusters(duckdb, tmp_path / "duckdb")
    assert by_spark.cluster_sizes == by_duckdb.cluster_sizes
    print(f"spark scored {by_spark.pairs} pairs in {spark_seconds:.1f} s (session start included)")


def test_a_bad_spark_master_is_one_line_before_spark_starts():
    for master in ("nonsense://x", "local[two]", "spark://no-port"):
        with pytest.raises(EngineUnavailable, match=f"--spark-master '{re.escape(master)}' is not a Spark master URL"):
            SplinkScoring("spark", master).spark_session()
