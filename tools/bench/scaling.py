"""How the cost grows with the store: backfill (the actual batch backfill, ``shared.services.batch_backfill``) and
incremental matching through the whole pipeline, at several store sizes.

Per size: a patients-only district dataset (the generator's duplicates and hard cases, no clinical
resources, so loading fits in minutes) is loaded straight into a fresh FHIR server; the backfill runs
in this process against it (emulators from a fresh ``LocalStack``, project of its own); then the
functions start (``LocalPipeline``) and ``events`` new patient records (a fifth of them copies of
existing people, so matching finds duplicates and merges run too) are written one PUT at a time from
8 threads. An event's latency is from the end of its PUT to the ``updated_at`` of its
``patient_keys`` document (rest-hook -> relay -> Pub/Sub -> match-patient -> Firestore).
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.client import FhirClient
from tools.bench.emulators import emulator_env
from tools.dataset.generate import Params, generate, iter_resources
from tools.dataset.load import load_dataset


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def event_patients(settings: Settings, directory: Path, events: int) -> list[dict]:
    """``events`` Patients to send after the district is loaded, from its own records under new ids:
    four in five a new person (the NIK's serial changed), one in five a duplicate."""
    existing = [p for _, p in zip(range(events * 5), iter_resources(directory, "bulk", "Patient"))]
    writes = []
    for i in range(events):
        patient = copy.deepcopy(existing[(i * 7) % len(existing)])
        patient["id"] = str(uuid.uuid4())
        patient.pop("meta", None)
        if i % 5:
            for identifier in patient.get("identifier") or []:
                if identifier.get("system") == settings.nik_system:
                    identifier["value"] = identifier["value"].replace(" ", "")[:12] + f"{9000 + i % 1000:04d}"
        writes.append(patient)
    return writes


def _incremental(settings: Settings, stack_env: dict, directory: Path, events: int, log_dir: Path) -> dict:
    from shared.adapters.firestore import firestore_client
    from tools.bench.contenders import vm_hwm_kib
    from tools.runtime.pipeline import LocalPipeline

    writes = event_patients(settings, directory, events)
    env = {**stack_env, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url, "DEDUP_PROJECT_ID": settings.project_id}
    db = firestore_client(settings)
    keys = db.collection(settings.collection("patient_keys"))
    with LocalPipeline(settings, env, log_dir) as pipeline, FhirClient(settings.fhir_base_url) as fhir:
        written: dict[str, float] = {}

        def put(patient: dict) -> None:
            fhir.update(patient)
            written[patient["id"]] = time.time()

        began = time.time()
        run_concurrently(put, writes, 8)
        deadline = time.time() + 600
        seen: dict[str, float] = {}
        while len(seen) < len(writes) and time.time() < deadline:
            missing = [keys.document(p["id"]) for p in writes if p["id"] not in seen]
            for snapshot in db.get_all(missing):
                if snapshot.exists:
                    seen[snapshot.id] = datetime.fromisoformat(snapshot.to_dict()["updated_at"]).timestamp()
            time.sleep(0.5)
        pipeline.wait_until_quiet(idle_seconds=3.0, timeout=600)
        memory = {name: round(vm_hwm_kib(f.process.pid) / 1024, 1) for name, f in pipeline.functions.items()}
    latencies = [seen[pid] - written[pid] for pid in seen]
    return {"events": len(writes), "indexed": len(seen),
            "events_per_second": len(seen) / (max(seen.values()) - began) if seen else 0.0,
            "latency_p50_s": statistics.median(latencies) if latencies else None,
            "latency_p95_s": percentile(latencies, 0.95) if latencies else None,
            "peak_memory_mib": memory}


def run_one(patients: int, events: int, work: Path, console) -> dict:
    from shared.adapters.pubsub import _publisher_client
    from shared.bootstrap import batch_backfill
    from tools.runtime.stack import LocalStack, start_fhir_server

    directory = work / f"district-{patients}"
    generate(directory, Params(patients=patients, seed=7, resources_per_patient=0.0, bulk_fraction=1.0))
    out: dict = {"patients": patients}
    with LocalStack(work_dir=work / f"stack-{patients}") as stack, start_fhir_server() as server:
        stack_env = emulator_env(stack)
        with FhirClient(server.base_url, max_connections=16) as loader:
            report = load_dataset(directory, loader, batch_size=100, workers=6, show_progress=False)
        out["load_seconds"] = round(report.seconds, 1)
        console.print(f"{patients:,} patients loaded in {report.seconds:.1f} s")
        settings = Settings(project_id=f"scale-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url)
        publisher = _publisher_client()
        topic = publisher.topic_path(settings.project_id, settings.topic_merge_requests)
        publisher.create_topic(name=topic)
        progress = batch_backfill(settings, work_dir=work / f"backfill-{patients}").run(f"scale-{patients}")
        out["backfill"] = {"seconds": round(progress.seconds, 1), "patients_per_second":
                           round(progress.patients_per_second, 1), "merge_requests": progress.requests_published,
                           "review_items": progress.reviews_proposed, "results": dict(progress.results)}
        console.print(f"backfill of {patients:,}: {progress.seconds:.1f} s = {progress.patients_per_second:.0f} "
                      f"patients/s; {progress.requests_published} merge requests")
        if events:
            out["incremental"] = _incremental(settings, stack_env, directory, events, work / f"logs-{patients}")
            console.print(f"incremental at {patients:,}: {out['incremental']}")
    return out


def run_scaling(sizes: list[int], *, events: int, console, work_dir: Path | None = None) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-scale-") as tmp:
        work = work_dir or Path(tmp)
        for size in sizes:
            results.append(run_one(size, events, work, console))
            results[-1]["load_average"] = os.getloadavg()[0]
    for r in results:
        console.print(r)
    return results
