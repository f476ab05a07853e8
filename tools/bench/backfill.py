"""The batch backfill's throughput: ``python -m tools.bench backfill --patients 10000,100000 --source fhir,ndjson``.

Per size and source: a patients-only district (``bulk_fraction=1``) is generated (NDJSON) and, for the
FHIR source, loaded into a fresh FHIR server (loading is not timed); then ``python -m ops backfill --json``
runs as its own process against fresh emulators and a project of its own (read, decide, index, publish;
merges are not run), and its summary (seconds per phase, patients/s, peak RSS) is reported with the
machine's load average before and after, and the CPU seconds the run cost: the backfill's processes
(its deciding workers included), each emulator and the FHIR server.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

from shared.config import Settings
from shared.fhir.client import FhirClient
from tools.bench.emulators import emulator_env
from tools.dataset.generate import Params, generate
from tools.dataset.load import load_dataset

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("DEDUP_ENVIRONMENT", "local")  # the local stack's development key


def _topic(settings: Settings) -> None:
    from shared.adapters.pubsub import _publisher_client

    publisher = _publisher_client()
    publisher.create_topic(name=publisher.topic_path(settings.project_id, settings.topic_merge_requests))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU of this process's finished children and theirs (the backfill and its deciding workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(patients: int, source: str, work: Path, console, engine: str | None = None) -> dict:
    """``engine``: the backfill's ``--engine`` (None: its default)."""
    from tools.runtime.stack import LocalStack, start_fhir_server

    directory = work / f"district-{patients}"
    if not (directory / "ground_truth.json").exists():
        generate(directory, Params(patients=patients, seed=7, resources_per_patient=0.0, bulk_fraction=1.0))
    with LocalStack(work_dir=work / f"stack-{patients}-{source}") as stack, start_fhir_server() as server:
        stack_env = emulator_env(stack)
        if source == "fhir":
            with FhirClient(server.base_url, max_connections=16) as loader:
                load_dataset(directory, loader, batch_size=500, workers=4, show_progress=False)
        settings = Settings(project_id=f"bench-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url)
        _topic(settings)
        env = {**os.environ, **stack_env, "DEDUP_PROJECT_ID": settings.project_id,
               "DEDUP_FHIR_BASE_URL": settings.fhir_base_url, "CI": "true"}
        args = ["--work-dir", str(work / f"run-{patients}-{source}-{engine or 'default'}"), "--json"]
        if engine:
            args += ["--engine", engine]
        if source == "ndjson":
            args += ["--ndjson", str(directory), "--no-fhir"]
        load_before = os.getloadavg()
        servers = {"firestore": stack.firestore.pid, "pubsub": stack.pubsub.pid, "fhir": server.process.pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in servers.items()}
        children_before = _children_cpu()
        done = subprocess.run([sys.executable, "-m", "ops", "backfill", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"backfill failed: {done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        # CPU seconds say what the run cost whatever else shared the cores (the wall time does not).
        cpu = {"backfill": round(_children_cpu() - children_before, 1),
               **{name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in servers.items()}}
    result = {"patients": patients, "source": source, "engine": engine or "default", "seconds": summary["seconds"],
              "patients_per_second": summary["patients_per_second"], "peak_rss_mb": summary["peak_rss_mb"],
              "worker_peak_rss_mb": summary["worker_peak_rss_mb"], "phase_seconds": summary["phase_seconds"],
              "decide_seconds": summary.get("decide_seconds"), "documents": summary.get("documents"),
              "merge_requests": summary["merge_requests_published"], "review_items": summary["review_items_proposed"],
              "scoring": summary.get("scoring"), "clusters": summary.get("clusters"), "cpu_seconds": cpu,
              "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)]}
    console.print(result)
    return result
