"""The incremental decision's latency: ``python -m tools.bench incremental --indexed 100000 --events 500``.

Issue 13's target: event in -> decision stored, p95 <= 250 ms on the local stack at 100,000 indexed
patients, model loading excluded. Here:

1. a patients-only district of ``indexed`` patients is generated (NDJSON) and indexed by the batch backfill
   from the files (``python -m ops backfill --ndjson --no-fhir``, its own process: fresh emulators, a
   project of its own; merges are not run);
2. ``events`` patient records (four in five a new person: the NIK's serial changed; one in five a copy of an
   indexed patient, so matching finds duplicates, opens requests and publishes them) are written to the
   FHIR server first (not timed);
3. each goes, one at a time, through the match function's use case with the real adapters in this
   process: ``MatchingService.handle_change(PatientChange(id, "upsert"))`` as ``functions/matching.py``
   calls it (FHIR read, the group transactions on the Firestore emulator with the review items they close,
   the merge request published on the Pub/Sub emulator, the patient's keys written last). The latency is
   that call's wall time: from the event in to the decision stored. The functions-framework process and
   Pub/Sub's push delivery are not in it (``tools.bench scale`` measures the whole pipeline).

The model is loaded before the first timed event; its file size and load time are reported apart.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.config import Settings
from tools.bench.backfill import REPO, _topic
from tools.bench.emulators import emulator_env
from tools.bench.scaling import event_patients, percentile
from tools.dataset.generate import Params, generate


def model_figures() -> dict:
    """The shipped default model's file size and the time to parse it (a fresh process: nothing cached)."""
    from shared.linkage import model as linkage

    path = Path(linkage.__file__).with_name("default_model.json")
    code = ("import time; t = time.perf_counter(); from shared.linkage.model import MatchModel; "
            "i = time.perf_counter(); "
            f"MatchModel.from_json(open({str(path)!r}, 'rb').read()); print(i - t, time.perf_counter() - i)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, "DEDUP_ENVIRONMENT": "local"})
    imports, parse = (float(x) for x in done.stdout.split())
    return {"model_file_bytes": path.stat().st_size, "model_load_ms": round(parse * 1000, 1),
            "model_code_import_ms": round(imports * 1000, 1)}


def run(indexed: int, events: int, work: Path, console, *, profile: bool = False) -> dict:
    from shared.bootstrap import matching_service
    from shared.fhir.client import FhirClient
    from shared.messages import PatientChange
    from tools.runtime.stack import LocalStack, start_fhir_server

    directory = work / f"district-{indexed}"
    if not (directory / "ground_truth.json").exists():
        generate(directory, Params(patients=indexed, seed=7, resources_per_patient=0.0, bulk_fraction=1.0))
    result: dict = {"indexed": indexed, "events": events, "path": "MatchingService.handle_change, real adapters "
                    "(Firestore and Pub/Sub emulators, the local FHIR server), in this process", **model_figures()}
    with LocalStack(work_dir=work / f"stack-incremental-{indexed}") as stack, start_fhir_server() as server:
        stack_env = emulator_env(stack)
        settings = Settings(project_id=f"incr-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url)
        _topic(settings)
        env = {**os.environ, **stack_env, "DEDUP_PROJECT_ID": settings.project_id,
               "DEDUP_FHIR_BASE_URL": settings.fhir_base_url, "CI": "true"}
        began = time.time()
        done = subprocess.run([sys.executable, "-m", "ops", "backfill", "--work-dir", str(work / f"run-{indexed}"),
                               "--ndjson", str(directory), "--no-fhir", "--json"], cwd=REPO, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"backfill failed: {done.stderr[-2000:]}")
        result["backfill_seconds"] = round(time.time() - began, 1)
        result["backfill"] = {k: v for k, v in json.loads(done.stdout).items() if k in ("patients", "results")}
        console.print(f"{indexed:,} patients indexed by the batch backfill in {result['backfill_seconds']} s")

        writes = event_patients(settings, directory, events)
        with FhirClient(settings.fhir_base_url) as fhir:
            for patient in writes:
                fhir.update(patient)
        matching = matching_service(settings)
        result["model_version"] = matching.model.version   # loaded before the first timed event
        profiler = cProfile.Profile() if profile else None
        latencies, outcomes = [], {}
        load_before = os.getloadavg()
        for patient in writes:
            if profiler:
                profiler.enable()
            start = time.perf_counter()
            outcome = matching.handle_change(PatientChange(patient["id"], "upsert"))
            latencies.append(time.perf_counter() - start)
            if profiler:
                profiler.disable()
            outcomes[outcome.result] = outcomes.get(outcome.result, 0) + 1
        result.update({
            "outcomes": outcomes,
            "latency_ms": {"p50": round(statistics.median(latencies) * 1000, 1),
                           "p95": round(percentile(latencies, 0.95) * 1000, 1),
                           "p99": round(percentile(latencies, 0.99) * 1000, 1),
                           "max": round(max(latencies) * 1000, 1)},
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        })
        if profiler:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(35)
            result["profile"] = text.getvalue()
    return result
