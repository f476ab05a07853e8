"""The three contenders: the field report's two deduplication versions and our pipeline.

``ReportDeduplicator`` is written from the report's description (not its code):
- find the NIK's patients (``Patient?identifier=<system>|<nik>``), read each one to choose the master:
  the active one carrying the self-referencing golden tag, else the most recently updated active one;
- for each of the 27 resource types and each duplicate, one search (pages of 100, the report's
  server limit) for resources referencing the duplicate; rewrite those references to the master;
- version 1: one NIK at a time, one search at a time, one PUT per resource;
  version 2: one NIK at a time, the 27 types searched by 5 threads (each thread searches its type for
  every duplicate in turn), the updates sent in batch bundles of 100;
- then each duplicate is read and written back inactive with a replaced-by link (and the golden tag
  naming the master); the master gets its self-referencing golden tag.

The search parameter per type is the one the report would use: ``patient`` where the server has it,
else ``subject``, else ``beneficiary`` (Coverage: R4's ``patient`` is the beneficiary), else the type's
first Patient-compartment parameter (Appointment ``actor``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.fhir.compartment import reference_search_plan
from shared.fhir.references import rewrite_patient_references

REPORT_TYPE_COUNT = 27
REPORT_PAGE_SIZE = 100
REPORT_BATCH_SIZE = 100
REPORT_WORKERS = 5


def report_types(fhir: FhirClient, store_counts: dict[str, int]) -> dict[str, str]:
    """{type: search param}: the 27 Patient-referencing types the server supports that the store holds
    most of (the report's 'most common ones')."""
    plan, _ = reference_search_plan(fhir.capability())
    plan.pop("Patient", None)
    chosen = sorted(plan, key=lambda t: (-store_counts.get(t, 0), t))[:REPORT_TYPE_COUNT]
    out = {}
    for rtype in chosen:
        params = plan[rtype]
        out[rtype] = next((p for p in ("patient", "subject", "beneficiary") if p in params), params[0])
    return out


@dataclass
class RunStats:
    niks: int = 0
    resources_updated: int = 0
    failures: list[str] = field(default_factory=list)
    seconds_per_nik: list[float] = field(default_factory=list)


class ReportDeduplicator:
    def __init__(self, fhir: FhirClient, settings: Settings, types: dict[str, str], *, version: int):
        self.fhir = fhir
        self.settings = settings
        self.types = types
        self.version = version
        self.stats = RunStats()

    # --- steps ---------------------------------------------------------------------------------
    def find_patients_by_nik(self, nik: str) -> list[str]:
        params = {"identifier": f"{self.settings.nik_system}|{nik}", "_count": str(REPORT_PAGE_SIZE)}
        return [p["id"] for p in self.fhir.search("Patient", params) if p.get("resourceType") == "Patient"]

    def _golden(self, patient: dict) -> bool:
        return any(t.get("system") == self.settings.golden_tag_system and t.get("code") == patient["id"]
                   for t in (patient.get("meta") or {}).get("tag") or [])

    def select_master(self, patient_ids: list[str]) -> str:
        patients = [self.fhir.read("Patient", pid) for pid in patient_ids]
        active = [p for p in patients if p.get("active", True)] or patients
        golden = [p for p in active if self._golden(p)]
        return max(golden or active, key=lambda p: (p.get("meta") or {}).get("lastUpdated", ""))["id"]

    def fetch(self, resource_type: str, patient_id: str) -> list[dict]:
        params = {self.types[resource_type]: f"Patient/{patient_id}", "_count": str(REPORT_PAGE_SIZE)}
        return [r for r in self.fhir.search(resource_type, params) if r.get("resourceType") == resource_type]

    def _fetch_type(self, resource_type: str, duplicate_ids: list[str]) -> list[dict]:
        found: dict[str, dict] = {}
        for pid in duplicate_ids:
            for resource in self.fetch(resource_type, pid):
                found[resource["id"]] = resource
        return list(found.values())

    def mark_inactive(self, duplicate_id: str, master_id: str) -> None:
        patient = self.fhir.read("Patient", duplicate_id)
        patient["active"] = False
        patient["link"] = [{"other": {"reference": f"Patient/{master_id}"}, "type": "replaced-by"}]
        meta = patient.setdefault("meta", {})
        meta["tag"] = [t for t in meta.get("tag") or [] if t.get("system") != self.settings.golden_tag_system] + [
            {"system": self.settings.golden_tag_system, "code": master_id}]
        self.fhir.update(patient)

    def tag_master(self, master_id: str) -> None:
        patient = self.fhir.read("Patient", master_id)
        if self._golden(patient):
            return
        meta = patient.setdefault("meta", {})
        meta["tag"] = [*(meta.get("tag") or []), {"system": self.settings.golden_tag_system, "code": master_id}]
        self.fhir.update(patient)

    # --- one NIK -------------------------------------------------------------------------------
    def deduplicate(self, nik: str) -> None:
        began = time.perf_counter()
        patient_ids = self.find_patients_by_nik(nik)
        if len(patient_ids) > 1:
            master = self.select_master(patient_ids)
            duplicates = [pid for pid in patient_ids if pid != master]
            replacements = {d: master for d in duplicates}
            if self.version == 1:
                for resource_type in self.types:
                    for pid in duplicates:
                        for resource in self.fetch(resource_type, pid):
                            rewritten, changes = rewrite_patient_references(resource, replacements)
                            if changes:
                                self.fhir.update(rewritten)
                                self.stats.resources_updated += 1
            else:
                with ThreadPoolExecutor(max_workers=REPORT_WORKERS) as pool:
                    per_type = list(pool.map(lambda t: self._fetch_type(t, duplicates), self.types))
                updates = []
                for resources in per_type:
                    for resource in resources:
                        rewritten, changes = rewrite_patient_references(resource, replacements)
                        if changes:
                            updates.append(rewritten)
                for start in range(0, len(updates), REPORT_BATCH_SIZE):
                    chunk = updates[start:start + REPORT_BATCH_SIZE]
                    outcomes = self.fhir.batch([{"resource": r, "request": {
                        "method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in chunk])
                    for resource, outcome in zip(chunk, outcomes):
                        if outcome.ok:
                            self.stats.resources_updated += 1
                        else:
                            self.stats.failures.append(f"{resource['resourceType']}/{resource['id']}: {outcome.status}")
            for pid in duplicates:
                self.mark_inactive(pid, master)
            self.tag_master(master)
        self.stats.niks += 1
        self.stats.seconds_per_nik.append(time.perf_counter() - began)

    def run(self, niks: list[str]) -> RunStats:
        for nik in niks:
            self.deduplicate(nik)
        return self.stats


# --- our pipeline ---------------------------------------------------------------------------------
@dataclass
class PipelineRun:
    seconds: float                       # first force-merge published -> last merge job completed
    jobs: list[dict]
    memory_kib: dict[str, int]           # function -> peak resident set (VmHWM)
    cpu_seconds: dict[str, float]        # process -> CPU time (user + system) spent during the timed run
    dead_letters: dict[str, int]
    log_dir: str


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                stack.extend(int(c) for c in open(f"/proc/{current}/task/{task}/children").read().split())
        except OSError:
            pass
    return found


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (``VmHWM`` in /proc/<pid>/status), KiB, of the largest process in the
    tree: functions-framework serves from a gunicorn worker, a child of the process started."""
    peak = 0
    for member in _descendants(pid):
        try:
            for line in open(f"/proc/{member}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its live descendants (functions-framework runs
    the function in a gunicorn worker), from ``/proc/<pid>/stat``, seconds."""
    total = 0
    for member in _descendants(pid):
        try:
            fields = open(f"/proc/{member}/stat").read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _epoch(iso: str | None) -> float | None:
    from datetime import datetime
    return datetime.fromisoformat(iso).timestamp() if iso else None


def run_pipeline(settings: Settings, stack_env: dict[str, str], niks: list[str], log_dir,
                 *, threads_per_function: int = 8, timeout: float = 1800.0, on_start=None,
                 watched_pids: dict[str, int] | None = None) -> PipelineRun:
    """Our pipeline as deployed: every function under functions-framework behind emulator push
    subscriptions, FHIR through ``settings.fhir_base_url`` (the proxy). The report's job (given NIKs,
    dedupe them) is sent as one ops force-merge message per NIK, the way ``python -m ops force-merge``
    sends it. Timed from the first publish to the ``completed_at`` of the last merge job."""
    from shared.adapters.firestore import firestore_client
    from shared.bootstrap import publisher as publisher_for
    from shared.messages import ForceMerge
    from shared.nik import nik_token
    from tools.runtime.pipeline import LocalPipeline

    env = {**stack_env, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url, "DEDUP_PROJECT_ID": settings.project_id}
    db = firestore_client(settings)
    jobs_collection = db.collection(settings.collection("merge_jobs"))
    groups = [db.collection(settings.collection("nik_index")).document(nik_token(n, settings.nik_hash_key))
              for n in niks]

    def jobs() -> list[dict]:
        return [d.to_dict() for d in jobs_collection.stream()]

    def busy() -> bool:
        if any(j.get("status") not in ("done", "failed", "unmerged") for j in jobs()):
            return True
        for snapshot in db.get_all(groups):
            request = (snapshot.to_dict() or {}).get("request") if snapshot.exists else None
            if not snapshot.exists or (request and request.get("status") != "done"):
                return True
        return False

    with LocalPipeline(settings, env, log_dir, threads_per_function=threads_per_function) as pipeline:
        if on_start:
            on_start()          # e.g. reset the proxy's counters after the pipeline's own set-up
        publisher = publisher_for(settings)
        pids = {**(watched_pids or {}), **{f"function {n}": f.process.pid for n, f in pipeline.functions.items()}}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own_before = sum(os.times()[:2])
        began = time.time()
        for nik in niks:
            publisher.send(ForceMerge(nik=nik, reason="benchmark: the field report's NIK list",
                                      requested_by="tools.bench"))
        pipeline.wait_until_quiet(busy_check=busy, idle_seconds=3.0, timeout=timeout)
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["bench process (delivery loops, proxy)"] = sum(os.times()[:2]) - own_before
        all_jobs = jobs()
        memory = {name: vm_hwm_kib(f.process.pid) for name, f in pipeline.functions.items()}
        dead = pipeline.dead_letter_counts()
    ends = [_epoch(j.get("completed_at")) for j in all_jobs if j.get("completed_at")]
    seconds = (max(ends) - began) if ends else float("nan")
    for job in all_jobs:
        job["_trigger_epoch"] = began
    return PipelineRun(seconds, all_jobs, memory, {k: round(v, 1) for k, v in cpu.items()}, dead, str(log_dir))


def _job_times(job: dict) -> tuple[float, float | None, float, int] | None:
    """(created, last type task finished or None, completed, tasks finished), seconds after the
    first trigger, from a job document; None for a job not completed."""
    created, done = _epoch(job.get("created_at")), _epoch(job.get("completed_at"))
    finished = [_epoch(t.get("finished_at")) for t in (job.get("types") or {}).values() if t.get("finished_at")]
    if not (created and done):
        return None
    t0 = job["_trigger_epoch"]
    return created - t0, (max(finished) - t0 if finished else None), done - t0, len(finished)


def job_timeline(jobs: list[dict]) -> list[dict[str, float]]:
    """Per merge job, seconds after the first trigger: job created, last type task done, completed."""
    rows = []
    for created, tasks_done, completed, tasks in filter(None, map(_job_times, jobs)):
        last_task = created if tasks_done is None else tasks_done
        rows.append({"created": round(created, 1), "tasks_done": round(last_task, 1),
                     "completed": round(completed, 1), "tasks": tasks})
    return sorted(rows, key=lambda r: r["created"])


def job_profile(jobs: list[dict]) -> dict[str, float]:
    """Where a merge job's time goes, from the job documents: trigger -> job created (matching and
    fan-out), created -> last type task finished (workers), -> completed (finaliser's sweep + patients)."""
    import statistics

    created, tasks, finalise, total = [], [], [], []
    for job_created, tasks_done, completed, _ in filter(None, map(_job_times, jobs)):
        if tasks_done is None:
            continue
        created.append(job_created)
        tasks.append(tasks_done - job_created)
        finalise.append(completed - tasks_done)
        total.append(completed - job_created)
    if not total:
        return {}
    med = statistics.median
    return {"jobs": len(total), "trigger_to_created_median_s": med(created), "trigger_to_created_max_s": max(created),
            "tasks_median_s": med(tasks), "tasks_max_s": max(tasks), "finalise_median_s": med(finalise),
            "finalise_max_s": max(finalise), "job_median_s": med(total), "job_max_s": max(total)}
