"""The batch backfill's decide phase alone, in process, without Firestore or Pub/Sub:
``python -m tools.bench partition --patients 100000,300000,1000000 --work-dir DIR``.

Per size: a patients-only district is generated as NDJSON (as ``tools.bench backfill`` does; kept and
reused in ``--work-dir``), then ``batch_parts.ParallelDecide`` runs over its files with an empty index,
writing its decision files to a scratch folder: keys, parts, decide, shared merge, each timed. Reported
with what grows with the store (blocks and their pairs, records past a block's cap, components, parts, the
largest of each: ``split``'s stats), the parent's peak RSS after each step, the deciding workers' peak RSS,
the CPU seconds of the parent and of the workers, and the machine's load average before and after (the
cores are shared: wall times are noisy, CPU seconds less so). ``--engine duckdb`` scores the store first
(the backfill's score phase: feature table, Splink's predict and clustering) and hands each part its
scores (``batch_score.scores_by_part``), with the parent's peak RSS after scoring.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from pathlib import Path

from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.logging import set_level
from shared.services.batch_parts import ParallelDecide
from tools.dataset.generate import Params, generate

os.environ.setdefault("DEDUP_ENVIRONMENT", "local")  # the local stack's development key


def district(patients: int, work: Path) -> Path:
    """The bench's district of ``patients`` (seed 7, patients only), generated once in ``work``."""
    directory = work / f"district-{patients}"
    if not (directory / "ground_truth.json").exists():
        generate(directory, Params(patients=patients, seed=7, resources_per_patient=0.0, bulk_fraction=1.0))
    return directory


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _score(source: NdjsonPatients, settings: Settings, engine_name: str, scored: Path) -> dict:
    from shared.adapters.memory_index import MemoryIndex
    from shared.adapters.splink_scoring import SplinkScoring
    from shared.services.batch_decide import matching_in_memory
    from shared.services.batch_score import score_store

    engine = SplinkScoring(engine_name, memory_limit=settings.duckdb_memory_limit,
                           temp_directory=settings.duckdb_temp_directory)
    began = time.monotonic()
    try:
        done = score_store(source.pages(), matching_in_memory(settings, MemoryIndex()), settings, engine, scored)
    finally:
        engine.close()
    return {"engine": engine, "seconds": round(time.monotonic() - began, 1), "pairs": done.pairs,
            "clusters": done.clusters, "rss_mb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_size(patients: int, work: Path, workers: int, console, engine: str | None = None) -> dict:
    from shared.services.batch_score import scores_by_part

    set_level(logging.WARNING)   # as the ops CLI's backfill: no line per patient
    settings = Settings()
    source = NdjsonPatients(district(patients, work))
    out, scored = work / f"partition-{patients}", work / f"partition-{patients}-scores"
    for folder in (out, scored):
        shutil.rmtree(folder, ignore_errors=True)
    out.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    cpu_before = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    scoring = _score(source, settings, engine, scored) if engine else None
    by_part = None if scoring is None else lambda part_of: scores_by_part(scoring["engine"], scored, part_of)
    parallel = ParallelDecide(settings, source, workers, scores_by_part=by_part)
    decided = parallel.run([], out, "2026-01-01T00:00:00+00:00")
    seconds = time.monotonic() - began
    for folder in (out, scored):
        shutil.rmtree(folder, ignore_errors=True)
    if scoring:
        scoring.pop("engine")
        scoring["lookups"] = {k: decided.scoring[k] for k in ("scored_by_engine", "scored_by_model")}
    result = {"patients": decided.patients, "workers": workers, "seconds": round(seconds, 1), "scoring": scoring,
              "step_seconds": {k: round(v, 1) for k, v in parallel.seconds.items()},
              "sizes": {k: v for k, v in parallel.stats.items() if not k.startswith("rss")},
              "parent_rss_mb": {**{k.removeprefix("rss_mb_"): v for k, v in parallel.stats.items()
                                   if k.startswith("rss")},
                                "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)},
              "worker_peak_rss_mb": round(decided.peak_rss_mb),
              "cpu_seconds": {"parent": round(_cpu(resource.RUSAGE_SELF) - cpu_before[0], 1),
                              "workers": round(_cpu(resource.RUSAGE_CHILDREN) - cpu_before[1], 1)},
              "documents": dict(decided.documents), "results": dict(decided.results),
              "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    console.print(result)
    return result
