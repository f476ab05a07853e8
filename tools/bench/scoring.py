"""Bulk scoring per engine: ``python -m tools.bench scoring --patients 10000,100000 --engines duckdb,spark``.

Per size: a patients-only district is generated (NDJSON, kept in the work directory), its feature table
built (the incremental path's index records and blocks, ``batch_score.feature_rows``), then per engine
Splink's ``predict`` over every candidate pair and the clustering at the auto-merge threshold
(``SplinkScoring.score``; Spark in local mode, ``--spark-master``, its session start timed apart), and the
pairs loaded back into the score table deciding asks. ``--decide`` also times deciding the store in memory
with the scores and without them. Reported with the process's peak RSS (Spark's JVM is another process)
and the machine's load average before and after.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.adapters.splink_scoring import SplinkScoring
from shared.config import Settings
from shared.linkage.model import default_model
from shared.logging import set_level
from shared.services.batch_decide import decide, matching_in_memory
from shared.services.batch_score import feature_rows, scores_table
from tools.dataset.generate import Params, generate

os.environ.setdefault("DEDUP_ENVIRONMENT", "local")  # the local stack's development key


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_size(patients: int, engines: list[str], work: Path, spark_master: str, with_decide: bool,
             console) -> list[dict]:
    set_level(logging.WARNING)   # as the ops CLI's backfill: no line per patient
    settings = Settings()
    directory = work / f"district-{patients}"
    if not (directory / "ground_truth.json").exists():
        generate(directory, Params(patients=patients, seed=7, resources_per_patient=0.0, bulk_fraction=1.0), settings)
    pages = list(NdjsonPatients(directory).pages())
    began = time.monotonic()
    rows = feature_rows(pages, matching_in_memory(settings, MemoryIndex()), settings)
    features = time.monotonic() - began
    artefact = matching_in_memory(settings, MemoryIndex()).model.artefact
    results = []
    for name in engines:
        load_before = os.getloadavg()[0]
        engine = SplinkScoring(name, spark_master if name == "spark" else None)
        out = work / f"scores-{patients}-{name}"
        session = 0.0
        if name == "spark":
            began = time.monotonic()
            engine.spark_session()
            session = time.monotonic() - began
        began = time.monotonic()
        try:
            scored = engine.score([rows], artefact, out, settings.model_merge_weight)
        finally:
            engine.close()
        scoring = time.monotonic() - began
        began = time.monotonic()
        table = scores_table(engine, out)
        loading = time.monotonic() - began
        result = {"patients": len(rows), "engine": name, "features_s": round(features, 1),
                  "session_s": round(session, 1), "predict_s": round(scored.seconds["predict"], 1),
                  "cluster_s": round(scored.seconds["cluster"], 1), "score_s": round(scoring, 1),
                  "load_table_s": round(loading, 1), "pairs": scored.pairs, "clusters": scored.clusters,
                  "largest_cluster": max(scored.cluster_sizes or {0: 0}), "peak_rss_mb": _rss_mb(),
                  "load_avg": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
        if with_decide:
            for label, scores in (("decide_with_scores_s", table), ("decide_model_only_s", None)):
                began = time.monotonic()
                model = default_model().with_scores(scores) if scores is not None else None
                decide(pages, matching_in_memory(settings, MemoryIndex(), model=model))
                result[label] = round(time.monotonic() - began, 1)
            result["lookups"] = {"scored_by_engine": table.hits, "scored_by_model": table.misses}
        console.print(result)
        results.append(result)
    return results
