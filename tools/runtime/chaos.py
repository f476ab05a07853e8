"""The chaos run (issue 12): merges on the local stack while everything that can go wrong does.

    python -m tools.runtime.chaos [--merges 300] [--seed 1] [--fault-rate 0.10] [--unmerge-share 0.05]

1. starts the local stack and a fault proxy in front of the FHIR server: ``--fault-rate`` of the
   functions' FHIR requests get a 503, a 429 with Retry-After, a timeout or a dropped connection
   (half of those after the server did the work);
2. starts the functions (reading FHIR through the proxy) with every Pub/Sub message delivered 1..3
   times, each copy after a random pause (out of order);
3. writes ``--merges`` NIKs with two records each (same person) and clinical resources on both: the
   rest-hook Subscription sends them through the relay to matching, which opens the merges;
4. meanwhile: clinicians edit patients and clinical resources (read, change, write with ifMatch,
   straight to the server), and a function process is SIGKILLed at random moments, each step
   (match-patient, merge-fanout, merge-worker, merge-finaliser) at least once while it works;
5. waits until quiet, unmerges ``--unmerge-share`` of the finished merges, runs the sweeper (which
   republishes or fails what is stuck) until nothing is stuck;
6. prints the counts below; exits 1 if one that must be 0 is not.

Counts: references to an inactive duplicate, lost clinical edits, chains or cycles, patients
deleted, requests stuck, merges without exactly one Provenance, unmerges not exact.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import typer
from rich.console import Console

from shared.bootstrap import fhir_client, groups, merge_deps, merge_jobs, report_sources
from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.errors import FhirError
from shared.fhir.references import patient_references
from shared.services.report import work_in_progress
from shared.services.sweeper import find_stuck, sweep
from shared.services.unmerge import unmerge
from tools.dataset.generate import make_nik
from tools.runtime.fault_proxy import Fault, FaultProxy
from tools.runtime.pipeline import DeliveryChaos, LocalPipeline
from tools.runtime.stack import LocalStack

console = Console()
app = typer.Typer(add_completion=False)

KILLED_STEPS = ("match-patient", "merge-fanout", "merge-worker", "merge-finaliser")
CLINICAL_TYPES = ("Observation", "Encounter")
EDIT_EXTENSION = "urn:chaos:clinician-edit"


@dataclass
class ChaosResult:
    merges: int = 0                  # jobs done (and not unmerged)
    failed_jobs: int = 0             # failed by the sweeper or a refused chain (rolled back)
    unmerges: int = 0
    kills: Counter = field(default_factory=Counter)
    edits: int = 0
    faults: Counter = field(default_factory=Counter)
    deliveries: int = 0
    seconds: float = 0.0
    # the invariants: each must be 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(v == 0 for v in self.counts.values())


def _seed_nik(settings: Settings, fhir, index: int, rng: random.Random) -> list[str]:
    """One person with two records (one NIK) and clinical resources on both; returns the patient ids."""
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(20000))
    nik = make_nik("01", birth, "male", 1000 + index % 9000)
    nik = nik[:12] + f"{index % 10000:04d}"
    ids = []
    for source in ("simrs", "simpus"):
        patient = fhir.create({
            "resourceType": "Patient", "active": True, "gender": "male", "birthDate": birth.isoformat(),
            "name": [{"text": f"Chaos Person {index:04d}"}], "meta": {"source": f"urn:source:{source}"},
            "identifier": [{"system": settings.nik_system, "value": nik}]})
        ids.append(patient["id"])
        fhir.create({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                     "subject": {"reference": f"Patient/{patient['id']}"}})
        fhir.create({"resourceType": "Encounter", "status": "finished",
                     "subject": {"reference": f"Patient/{patient['id']}"},
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
    return ids


def _edit(fhir, resource_type: str, resource_id: str, marker: str) -> bool:
    """A clinician's edit: read, add a marker, write with ifMatch; a 412 reads again."""
    for _ in range(5):
        try:
            current = fhir.read(resource_type, resource_id)
            extension = [*current.get("extension", []), {"url": EDIT_EXTENSION, "valueString": marker}]
            fhir.update({**current, "extension": extension}, if_match=current["meta"]["versionId"])
            return True
        except FhirError:
            time.sleep(0.1)
    return False


def _clinicians(fhir, patient_ids: list[str], clinical: list[tuple[str, str]], stop: threading.Event,
                rng: random.Random, edits: list[tuple[str, str, str]]) -> None:
    while not stop.is_set():
        if rng.random() < 0.5 and clinical:
            resource_type, resource_id = rng.choice(clinical)
        else:
            resource_type, resource_id = "Patient", rng.choice(patient_ids)
        marker = uuid.uuid4().hex[:12]
        if _edit(fhir, resource_type, resource_id, marker):
            edits.append((resource_type, resource_id, marker))
        time.sleep(rng.uniform(0.05, 0.3))


def _killer(pipeline: LocalPipeline, stop: threading.Event, rng: random.Random, kills: Counter,
            pause_s: float) -> None:
    """Kills a step's process while it has work in flight, the least-killed step first."""
    while not stop.is_set():
        # Once every step was hit, kill less often: the pipeline must still make progress.
        time.sleep(rng.uniform(0.2, pause_s) * (1 if any(kills[s] == 0 for s in KILLED_STEPS) else 5))
        busy = [name for name in KILLED_STEPS if pipeline.stats[name].in_flight > 0]
        if not busy:
            continue
        name = min(busy, key=lambda n: (kills[n], rng.random()))
        if kills[name] and any(kills[s] == 0 for s in KILLED_STEPS):
            continue   # wait for a step not hit yet to be busy
        pipeline.kill_and_restart(name)
        kills[name] += 1


def _all(fhir, resource_type: str) -> list[dict]:
    return list(fhir.search(resource_type, {"_count": "500"}))


def check(settings: Settings, fhir, created_patients: list[str], edits: list[tuple[str, str, str]],
          unmerged: dict[str, dict]) -> dict[str, int]:
    patients = {p["id"]: p for p in _all(fhir, "Patient")}
    replaced_by = {pid: [(link.get("other") or {}).get("reference", "").removeprefix("Patient/")
                         for link in p.get("link", []) if link.get("type") == "replaced-by"]
                   for pid, p in patients.items()}
    inactive_duplicates = {pid for pid, targets in replaced_by.items() if targets}
    references = 0
    for resource_type in CLINICAL_TYPES:
        for resource in _all(fhir, resource_type):
            references += sum(1 for _, pid in patient_references(resource) if pid in inactive_duplicates)
    chains = sum(1 for pid, targets in replaced_by.items() for t in targets if replaced_by.get(t))
    lost = 0
    for resource_type, resource_id, marker in edits:
        current = fhir.read(resource_type, resource_id)
        markers = {e.get("valueString") for e in current.get("extension", []) if e.get("url") == EDIT_EXTENSION}
        lost += marker not in markers
    deleted = sum(1 for pid in created_patients if pid not in patients)
    stuck = len(find_stuck(merge_jobs(settings), groups(settings), 0))
    provenances: Counter = Counter()
    for provenance in _all(fhir, "Provenance"):
        codes = {c.get("code") for c in (provenance.get("activity") or {}).get("coding", [])}
        for reason in provenance.get("reason", []):
            text = reason.get("text") or ""
            if "(merge job " in text and "merge" in codes:
                provenances[text.rsplit("(merge job ", 1)[1].rstrip(")")] += 1
    done = merge_jobs(settings).finished()
    not_one_provenance = sum(1 for job in done if provenances[job["job_id"]] != 1)
    inexact = 0
    for job_id, (job, report) in unmerged.items():
        # changed since the merge (a clinician's edit): reported by the unmerge, never clobbered
        reported = {(c["resource_type"], c["id"]) for c in report.conflicts}
        for pid in job["duplicates"]:
            patient = fhir.read("Patient", pid)
            if patient.get("active") is False or replaced_by.get(pid):
                inexact += 1
        for entry in merge_deps(settings).jobs.journal_entries(job_id, kind="reference"):
            if (entry["resource_type"], entry["id"]) in reported:
                continue
            current = fhir.read(entry["resource_type"], entry["id"])
            if not {pid for _, pid in patient_references(current)} & set(job["duplicates"]):
                inexact += 1
    return {"references to an inactive duplicate": references, "lost clinical edits": lost,
            "chains or cycles": chains, "patients deleted": deleted, "requests stuck": stuck,
            "merges without exactly one Provenance": not_one_provenance, "unmerges not exact": inexact}


def run_chaos(merges: int, seed: int = 1, fault_rate: float = 0.10, unmerge_share: float = 0.05,
              timeout: float = 3600.0, kill_pause_s: float = 3.0) -> ChaosResult:
    rng = random.Random(seed)
    result = ChaosResult()
    began = time.monotonic()
    with LocalStack() as stack:
        os.environ.update({k: stack.env[k] for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")})
        faults = (Fault.unavailable(503), Fault.rate_limited(retry_after=0.5), Fault.drop(),
                  Fault.drop(forward_first=True), Fault.delay(6.0, forward_first=True))
        proxy = FaultProxy(stack.fhir.base_url, seed=seed, fault_rate=fault_rate, random_faults=faults).start()
        settings = Settings(project_id=f"chaos-{uuid.uuid4().hex[:8]}", fhir_base_url=stack.fhir.base_url)
        direct = fhir_client(settings)          # clinicians, the checks: straight to the server
        env = {**stack.env, "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": proxy.base_url,
               "DEDUP_FHIR_TIMEOUT_SECONDS": "5", "DEDUP_FHIR_RETRY_BUDGET_SECONDS": "60"}
        log_dir = Path(os.environ.get("CHAOS_LOG_DIR", f"/tmp/chaos-{settings.project_id}"))
        pipeline = LocalPipeline(settings, env, log_dir, threads_per_function=4,
                                 chaos=DeliveryChaos(max_copies=3, max_delay_s=1.0, seed=seed)).start()
        stop = threading.Event()
        edits: list[tuple[str, str, str]] = []
        try:
            console.print(f"seeding {merges} NIKs x 2 records (+ clinical resources) ...")
            seeded = run_concurrently(lambda i: _seed_nik(settings, direct, i, random.Random(seed * 100003 + i)),
                                      list(range(merges)), 4)
            created = [pid for ids in seeded for pid in ids]
            clinical = [(r["resourceType"], r["id"]) for t in CLINICAL_TYPES for r in _all(direct, t)]
            workers = [threading.Thread(target=_clinicians, args=(direct, created, clinical, stop,
                                                                  random.Random(seed + 7), edits), daemon=True),
                       threading.Thread(target=_killer, args=(pipeline, stop, random.Random(seed + 11), result.kills,
                                                              kill_pause_s), daemon=True)]
            for worker in workers:
                worker.start()
            sources = report_sources(settings)
            deadline = time.monotonic() + timeout
            # Until the merge work is done (the clinicians keep match-patient busy meanwhile).
            quiet_since = None
            while time.monotonic() < deadline:
                time.sleep(2)
                work = work_in_progress(sources)
                merging = sum(pipeline.stats[s].in_flight for s in KILLED_STEPS[1:])
                console.print(f"  merge work {work}, merge messages in flight {merging}, kills {dict(result.kills)}, "
                              f"edits {len(edits)}", highlight=False)
                finished = sum(1 for j in merge_jobs(settings).all() if j.get("status") in ("done", "failed"))
                if not work and not merging and finished >= merges:
                    break
                matching = pipeline.stats["match-patient"].in_flight
                quiet_since = (quiet_since or time.monotonic()) if not (work or merging or matching) else None
                if quiet_since and time.monotonic() - quiet_since > 15:
                    break
            stop.set()
            for worker in workers:
                worker.join(timeout=60)
            pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(sources) > 0, timeout=timeout)

            done = merge_jobs(settings).finished()
            unmerged = {}
            for job in rng.sample(done, max(1, int(len(done) * unmerge_share))) if done else []:
                unmerged[job["job_id"]] = (job, unmerge(job["job_id"], merge_deps(settings)))
            # The sweeper, as its schedule would run it once everything has aged past the limit.
            for round_ in range(settings.stuck_republish_limit + 2):
                later = datetime.now(UTC) + timedelta(seconds=settings.stuck_after_seconds * (round_ + 1) + 60)
                report = sweep(merge_deps(settings), groups(settings), now=later)
                console.print(f"sweep {round_ + 1}: stuck {report.stuck}, republished {len(report.republished)}, "
                              f"completed {len(report.completed)}, released {len(report.released)}, "
                              f"failed {len(report.failed)}")
                pipeline.wait_until_quiet(busy_check=lambda: False, timeout=timeout)
                if not report.stuck:
                    break
            result.unmerges = len(unmerged)
            jobs = merge_jobs(settings).all()
            result.merges = sum(1 for j in jobs if j.get("status") == "done")
            result.failed_jobs = sum(1 for j in jobs if j.get("status") == "failed")
            result.edits = len(edits)
            result.faults = Counter(r.outcome for r in proxy.requests if r.outcome != "forwarded")
            result.deliveries = sum(s.delivered for s in pipeline.stats.values())
            result.counts = check(settings, direct, created, edits, unmerged)
            result.counts["steps never killed while working"] = sum(1 for s in KILLED_STEPS if not result.kills[s])
        finally:
            stop.set()
            pipeline.stop()
            proxy.stop()
    result.seconds = time.monotonic() - began
    return result


def print_result(result: ChaosResult) -> None:
    console.print(f"merges done {result.merges} (+{result.unmerges} unmerged afterwards), jobs failed and rolled "
                  f"back {result.failed_jobs}; function kills {dict(result.kills)}; clinician edits {result.edits}; "
                  f"FHIR faults injected {dict(result.faults)}; deliveries {result.deliveries}; "
                  f"{result.seconds:.0f} s")
    for name, count in result.counts.items():
        console.print(f"  {name}: {'[green]' if count == 0 else '[red]'}{count}")


@app.command()
def main(merges: int = typer.Option(300, "--merges", min=1), seed: int = typer.Option(1, "--seed"),
         fault_rate: float = typer.Option(0.10, "--fault-rate"),
         unmerge_share: float = typer.Option(0.05, "--unmerge-share")):
    result = run_chaos(merges, seed, fault_rate, unmerge_share)
    print_result(result)
    raise typer.Exit(0 if result.ok else 1)


if __name__ == "__main__":
    app()
