"""The chaos run (issue 12): merges on the local stack while everything that can go wrong does.

    python -m tools.runtime.chaos [--merges 300] [--seed 1] [--fault-rate 0.10] [--unmerge-share 0.05]
                                  [--kills-per-step 3] [--stuck-after 20]

1. starts the local stack and a fault proxy in front of the FHIR server: ``--fault-rate`` of the
   functions' FHIR requests get a 503, a 429 with Retry-After, a delay past the client's timeout or a
   dropped connection (the last two also after the server did the work);
2. starts the functions (reading FHIR through the proxy) with every Pub/Sub message delivered 1..3
   times, each copy after a random pause (out of order);
3. writes ``--merges`` NIKs with two records each (same person) and clinical resources on both: the
   rest-hook Subscription sends them through the relay to matching, which opens the merges;
4. the chaos phase: clinicians edit patients and clinical resources (read, change, write with ifMatch,
   straight to the server), and each step (match-patient, merge-fanout, merge-worker, merge-finaliser)
   is SIGKILLed ``--kills-per-step`` times while it handles a message: the first as soon as it works,
   the others when a random share (up to 90 %) of the merges has finished (skipped if the step gets no
   work for a while), so the kills are spread over the run and the pipeline still finishes. The phase
   ends when every merge has finished (done or failed) and every step was killed, or when the merge
   steps have been idle for a while;
5. the end: the clinicians stop, the pipeline drains, ``--unmerge-share`` of the finished merges are
   unmerged, then the ``sweeper`` function runs (``SweepRun`` with ``--stuck-after`` seconds) until
   nothing is stuck or it has given up on what is (its republish limit);
6. prints the counts below, and how often each fault kind and each kill happened; exits 1 unless
   every count is 0.

Counts: references to an inactive duplicate, lost clinical edits, chains or cycles, patients
deleted, requests stuck, merges without exactly one Provenance, unmerges not exact, fault kinds
never injected, steps never killed while working.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.console import Console

from shared.bootstrap import fhir_client, groups, merge_deps, merge_jobs, publisher, report_sources
from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.domain.group import GROUP_COLLECTIONS
from shared.fhir.errors import FhirError
from shared.fhir.references import patient_references
from shared.messages import SweepRun
from shared.services.report import work_in_progress
from shared.services.sweeper import find_stuck
from shared.services.unmerge import unmerge
from tools.dataset.generate import make_nik
from tools.runtime.fault_proxy import Fault, FaultProxy
from tools.runtime.pipeline import DeliveryChaos, LocalPipeline
from tools.runtime.stack import LocalStack

console = Console()
app = typer.Typer(add_completion=False)

KILLED_STEPS = ("match-patient", "merge-fanout", "merge-worker", "merge-finaliser")
MERGE_STEPS = KILLED_STEPS[1:]
CLINICAL_TYPES = ("Observation", "Encounter")
EDIT_EXTENSION = "urn:chaos:clinician-edit"
# The proxy's outcome of each injected fault (tools/runtime/fault_proxy.py).
FAULTS = {"status-503": Fault.unavailable(503), "status-429": Fault.rate_limited(retry_after=0.5),
          "drop": Fault.drop(), "drop-after-forward": Fault.drop(forward_first=True),
          "delay-after-forward": Fault.delay(6.0, forward_first=True)}
FHIR_TIMEOUT_SECONDS = 5          # the functions' client timeout: the delay fault waits past it
MERGE_IDLE_SECONDS = 60           # the chaos phase ends after the merge steps were idle this long
KILL_WAIT_SECONDS = 30            # a planned kill (after the first) waits this long for the step to work
JOB_FINISHED = ("done", "failed", "unmerged")


@dataclass
class ChaosResult:
    merges: int = 0                  # jobs done (and not unmerged)
    failed_jobs: int = 0             # failed by the sweeper or a refused chain (rolled back)
    unmerges: int = 0
    kills: Counter = field(default_factory=Counter)
    edits: int = 0
    faults: Counter = field(default_factory=Counter)
    fhir_requests: int = 0
    deliveries: int = 0
    sweeps: int = 0
    seconds: float = 0.0
    # the invariants: each must be 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)   # what each nonzero count is made of (ids only)

    @property
    def ok(self) -> bool:
        return all(v == 0 for v in self.counts.values())


@dataclass
class _Progress:
    """Shared between the main loop (writes) and the killers (read)."""
    finished: int = 0
    errors: list[str] = field(default_factory=list)   # a killer's failure (a function not restarted)


def _seed_nik(settings: Settings, fhir, index: int, rng: random.Random) -> tuple[list[str], list[tuple[str, str]]]:
    """One person with two records (one NIK) and clinical resources on both: the patient ids and the
    clinical resources (type, id)."""
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(20000))
    nik = make_nik("01", birth, "male", 1000 + index % 9000)
    nik = nik[:12] + f"{index % 9999 + 1:04d}"   # serials start at 0001 (0000 is a NIK cut short)
    ids, clinical = [], []
    for source in ("simrs", "simpus"):
        patient = fhir.create({
            "resourceType": "Patient", "active": True, "gender": "male", "birthDate": birth.isoformat(),
            "name": [{"text": f"Chaos Person {index:04d}"}], "meta": {"source": f"urn:source:{source}"},
            "identifier": [{"system": settings.nik_system, "value": nik}]})
        ids.append(patient["id"])
        subject = {"reference": f"Patient/{patient['id']}"}
        for resource in (
                {"resourceType": "Observation", "status": "final", "code": {"text": "bp"}, "subject": subject},
                {"resourceType": "Encounter", "status": "finished", "subject": subject,
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}):
            clinical.append((resource["resourceType"], fhir.create(resource)["id"]))
    return ids, clinical


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


def kill_plan(rng: random.Random, kills_per_step: int) -> list[float]:
    """When one step's kills happen, as the share of the merges finished: the first at once (as soon as
    the step works), the others at random moments up to 90 % of the run."""
    return [0.0, *sorted(rng.uniform(0.0, 0.9) for _ in range(kills_per_step - 1))] if kills_per_step else []


def _killer(pipeline: LocalPipeline, step: str, plan: list[float], merges: int, progress: _Progress,
            stop: threading.Event, rng: random.Random, kills: Counter) -> None:
    try:
        _kill_as_planned(pipeline, step, plan, merges, progress, stop, rng, kills)
    except Exception as error:   # a function that cannot be restarted: the run stops (see the main loop)
        progress.errors.append(f"{step}: {error!r}")


def _kill_as_planned(pipeline: LocalPipeline, step: str, plan: list[float], merges: int, progress: _Progress,
                     stop: threading.Event, rng: random.Random, kills: Counter) -> None:
    """Kills ``step`` at each moment of ``plan``, while it handles a message: the first kill waits as
    long as it takes, a later one gives up after ``KILL_WAIT_SECONDS`` without work (the step's share
    of the run may be over)."""
    for at in plan:
        while not stop.is_set() and progress.finished < at * merges:
            time.sleep(0.2)
        give_up = time.monotonic() + KILL_WAIT_SECONDS if kills[step] else float("inf")
        while not stop.is_set() and time.monotonic() < give_up:
            if pipeline.stats[step].handling > 0:
                time.sleep(rng.uniform(0.0, 0.2))      # somewhere into the work, not at its first byte
                if pipeline.stats[step].handling > 0:
                    pipeline.kill_and_restart(step)
                    kills[step] += 1
                    break
            time.sleep(0.02)
        if stop.is_set():
            return


def _all(fhir, resource_type: str) -> list[dict]:
    return list(fhir.search(resource_type, {"_count": "500"}))


def open_work(settings: Settings) -> list[str]:
    """What ``work_in_progress`` counts, one line each (ids and statuses only): shown when it stays."""
    jobs = merge_jobs(settings)
    lines = [f"job {j['job_id']} {j.get('status')} (sweeps {j.get('sweeps') or 0})" for j in jobs.all()
             if j.get("status") in ("running", "finalising")]
    store = groups(settings)
    for collection in GROUP_COLLECTIONS:
        for group in store.all(collection):
            request = group.request
            if request and request.in_progress:
                job = jobs.get(request.id)
                members = {pid: m.get("status") for pid, m in group.members.items()}
                lines.append(f"request {request.id} {request.status} in {group.id}: master {request.master}, "
                             f"duplicates {request.duplicates}, published {request.published}, reason "
                             f"{request.reason}, follow-up of {request.follow_up_of}, job "
                             f"{job and job.get('status')}, members {members}")
    return lines


def check(settings: Settings, fhir, created_patients: list[str], clinical: list[tuple[str, str]],
          edits: list[tuple[str, str, str]], unmerged: dict[str, tuple[dict, object]],
          problems: list[str] | None = None) -> dict[str, int]:
    """The invariants over what the run created (the FHIR server may hold others' data too);
    ``problems`` gets one line per unexact unmerge, so a failure says what to look at."""
    problems = [] if problems is None else problems
    patients = {}
    for pid in created_patients:
        try:
            patients[pid] = fhir.read("Patient", pid)
        except FhirError:
            pass
    replaced_by = {pid: [(link.get("other") or {}).get("reference", "").removeprefix("Patient/")
                         for link in p.get("link", []) if link.get("type") == "replaced-by"]
                   for pid, p in patients.items()}
    inactive_duplicates = {pid for pid, targets in replaced_by.items() if targets}
    current = {(t, i): fhir.read(t, i) for t, i in clinical}
    references = sum(1 for resource in current.values()
                     for _, pid in patient_references(resource) if pid in inactive_duplicates)
    # A chain: a replaced patient's target is itself replaced (a cycle is a chain that comes back).
    chains = sum(1 for pid, targets in replaced_by.items() for t in targets if replaced_by.get(t) or t == pid)
    lost = 0
    for resource_type, resource_id, marker in edits:
        now = patients.get(resource_id) if resource_type == "Patient" else current.get((resource_type, resource_id))
        markers = {e.get("valueString") for e in (now or {}).get("extension", []) if e.get("url") == EDIT_EXTENSION}
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
            patient = patients.get(pid) or {}
            if patient.get("active") is False or replaced_by.get(pid):
                inexact += 1
                problems.append(f"unmerge {job_id}: duplicate Patient/{pid} still inactive or replaced "
                                f"(version {(patient.get('meta') or {}).get('versionId')}, report {report})")
        for entry in merge_deps(settings).jobs.journal_entries(job_id, kind="reference"):
            if (entry["resource_type"], entry["id"]) in reported:
                continue
            resource = fhir.read(entry["resource_type"], entry["id"])
            if not {pid for _, pid in patient_references(resource)} & set(job["duplicates"]):
                inexact += 1
                problems.append(f"unmerge {job_id}: {entry['resource_type']}/{entry['id']} (journal status "
                                f"{entry.get('status')}) does not reference a duplicate again")
    return {"references to an inactive duplicate": references, "lost clinical edits": lost,
            "chains or cycles": chains, "patients deleted": deleted, "requests stuck": stuck,
            "merges without exactly one Provenance": not_one_provenance, "unmerges not exact": inexact}


def _finished_jobs(settings: Settings) -> int:
    return sum(1 for j in merge_jobs(settings).all() if j.get("status") in JOB_FINISHED)


def run_chaos(merges: int, seed: int = 1, fault_rate: float = 0.10, unmerge_share: float = 0.05,
              kills_per_step: int = 3, stuck_after_seconds: int = 20, timeout: float = 3600.0,
              stack: LocalStack | None = None, fhir_base_url: str | None = None,
              log_dir: Path | None = None) -> ChaosResult:
    """The run (see the module's docstring). ``stack``/``fhir_base_url``: an already running stack and
    an empty FHIR server of it (the test suite's), else a local stack is started for the run."""
    if stack is None:
        with LocalStack() as own:
            return run_chaos(merges, seed, fault_rate, unmerge_share, kills_per_step, stuck_after_seconds,
                             timeout, own, own.fhir.base_url, log_dir)
    rng = random.Random(seed)
    result = ChaosResult()
    began = time.monotonic()
    deadline = began + timeout
    os.environ.update({k: stack.env[k] for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")})
    fhir_base_url = fhir_base_url or stack.fhir.base_url
    proxy = FaultProxy(fhir_base_url, seed=seed, fault_rate=fault_rate, random_faults=tuple(FAULTS.values())).start()
    for fault in FAULTS.values():
        proxy.inject(fault)   # every kind at least once, whatever the dice say (the first requests)
    settings = Settings(project_id=f"chaos-{uuid.uuid4().hex[:8]}", fhir_base_url=fhir_base_url)
    direct = fhir_client(settings)          # clinicians, unmerges, the checks: straight to the server
    env = {**stack.env, "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": proxy.base_url,
           "DEDUP_FHIR_TIMEOUT_SECONDS": str(FHIR_TIMEOUT_SECONDS), "DEDUP_FHIR_RETRY_BUDGET_SECONDS": "60"}
    log_dir = log_dir or Path(os.environ.get("CHAOS_LOG_DIR", f"/tmp/chaos-{settings.project_id}"))
    console.print(f"logs: {log_dir}")
    pipeline = LocalPipeline(settings, env, log_dir, threads_per_function=4,
                             chaos=DeliveryChaos(max_copies=3, max_delay_s=1.0, seed=seed)).start()
    stop_clinicians, stop_killers = threading.Event(), threading.Event()
    edits: list[tuple[str, str, str]] = []
    progress = _Progress()
    killers = [threading.Thread(target=_killer, daemon=True, name=f"kill-{step}",
                                args=(pipeline, step, kill_plan(random.Random(f"{seed}-{step}"), kills_per_step),
                                      merges, progress, stop_killers, random.Random(f"{seed}-{step}-moment"),
                                      result.kills))
               for step in KILLED_STEPS]
    clinicians: list[threading.Thread] = []
    try:
        for killer in killers:
            killer.start()
        console.print(f"seeding {merges} NIKs x 2 records (+ clinical resources) ...")
        seeded = run_concurrently(lambda i: _seed_nik(settings, direct, i, random.Random(seed * 100003 + i)),
                                  list(range(merges)), 4)
        created = [pid for ids, _ in seeded for pid in ids]
        clinical = [item for _, resources in seeded for item in resources]
        clinicians = [threading.Thread(target=_clinicians, daemon=True, name="clinicians",
                                       args=(direct, created, clinical, stop_clinicians, random.Random(seed + 7),
                                             edits))]
        clinicians[0].start()

        # The chaos phase: until every merge finished and every planned kill happened, or the merge
        # steps stay idle (what is left is stuck: the sweeper's).
        sources = report_sources(settings)
        idle_since, last_finished = None, -1
        while time.monotonic() < deadline:
            time.sleep(2)
            if progress.errors:
                raise RuntimeError(f"a killed function could not be restarted: {progress.errors}")
            progress.finished = _finished_jobs(settings)
            work = work_in_progress(sources)
            merging = sum(pipeline.stats[s].in_flight for s in MERGE_STEPS)
            console.print(f"  {time.monotonic() - began:5.0f} s: merges finished {progress.finished}/{merges}, "
                          f"merge work {work}, merge messages in flight {merging}, kills {dict(result.kills)}, "
                          f"edits {len(edits)}", highlight=False)
            every_step_killed = all(result.kills[s] for s in KILLED_STEPS)
            if progress.finished >= merges and every_step_killed and not work and not merging:
                break
            busy = merging or progress.finished != last_finished
            idle_since = None if busy else (idle_since or time.monotonic())
            last_finished = progress.finished
            if idle_since and time.monotonic() - idle_since > MERGE_IDLE_SECONDS:
                console.print("  merge steps idle: ending the chaos phase", highlight=False)
                break

        # The end: no more edits or kills; the pipeline drains what is in flight.
        stop_clinicians.set()
        stop_killers.set()
        for worker in [*clinicians, *killers]:
            worker.join(timeout=120)
        console.print("draining ...")
        try:
            pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(sources) > 0,
                                      timeout=max(60.0, min(600.0, deadline - time.monotonic())))
        except TimeoutError:
            console.print("  still open after the drain (the sweeper's now):", highlight=False)
            for line in open_work(settings):
                console.print(f"    {line}", highlight=False)
            pipeline.wait_until_quiet(timeout=600)

        done = merge_jobs(settings).finished()
        unmerged = {}
        for job in rng.sample(done, max(1, round(len(done) * unmerge_share))) if done else []:
            unmerged[job["job_id"]] = (job, unmerge(job["job_id"], merge_deps(settings)))
        pipeline.wait_until_quiet(timeout=600)   # the unmerged patients' change events

        # The sweeper function, as Cloud Scheduler fires it, with a short age for the run: at least
        # once, then until nothing is stuck (it republishes, then fails what stays stuck past its
        # republish limit).
        for round_ in range(settings.stuck_republish_limit + 3):
            stuck = find_stuck(merge_jobs(settings), groups(settings), 0)
            if round_ and not stuck:
                break
            time.sleep(stuck_after_seconds + 1)
            publisher(settings).send(SweepRun(older_than_seconds=stuck_after_seconds))
            result.sweeps += 1
            pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(sources) > 0, idle_seconds=3,
                                      timeout=600)
            console.print(f"  sweep {round_ + 1}: {len(stuck)} stuck before it, "
                          f"{len(find_stuck(merge_jobs(settings), groups(settings), 0))} after", highlight=False)
        for line in open_work(settings):
            console.print(f"  still open: {line}", highlight=False)

        result.unmerges = len(unmerged)
        jobs = merge_jobs(settings).all()
        result.merges = sum(1 for j in jobs if j.get("status") == "done")
        result.failed_jobs = sum(1 for j in jobs if j.get("status") == "failed")
        result.edits = len(edits)
        outcomes = Counter(r.outcome for r in proxy.requests)
        result.fhir_requests = sum(outcomes.values())
        result.faults = Counter({kind: outcomes.get(kind, 0) for kind in FAULTS})
        result.deliveries = sum(s.delivered for s in pipeline.stats.values())
        result.counts = check(settings, direct, created, clinical, edits, unmerged, result.problems)
        result.counts["fault kinds never injected"] = sum(1 for kind in FAULTS if not result.faults[kind])
        result.counts["steps never killed while working"] = sum(1 for s in KILLED_STEPS if not result.kills[s])
    finally:
        stop_clinicians.set()
        stop_killers.set()
        pipeline.stop()
        proxy.stop()
    result.seconds = time.monotonic() - began
    return result


def print_result(result: ChaosResult) -> None:
    console.print(f"merges done {result.merges} (+{result.unmerges} unmerged afterwards), jobs failed and rolled "
                  f"back {result.failed_jobs}; clinician edits {result.edits}; Pub/Sub deliveries "
                  f"{result.deliveries}; sweeper runs {result.sweeps}; {result.seconds:.0f} s", highlight=False)
    console.print(f"function kills (while handling a message): {dict(result.kills)}", highlight=False)
    console.print(f"FHIR faults injected ({result.fhir_requests} requests through the proxy): "
                  f"{dict(result.faults)}", highlight=False)
    for name, count in result.counts.items():
        console.print(f"  {name}: {'[green]' if count == 0 else '[red]'}{count}")
    for line in result.problems:
        console.print(f"    {line}", highlight=False)


@app.command()
def main(merges: int = typer.Option(300, "--merges", min=1), seed: int = typer.Option(1, "--seed"),
         fault_rate: float = typer.Option(0.10, "--fault-rate"),
         unmerge_share: float = typer.Option(0.05, "--unmerge-share"),
         kills_per_step: int = typer.Option(3, "--kills-per-step", min=1),
         stuck_after: int = typer.Option(20, "--stuck-after", min=1,
                                         help="the sweeper's age of stuck work for this run (seconds)")):
    result = run_chaos(merges, seed, fault_rate, unmerge_share, kills_per_step, stuck_after)
    print_result(result)
    raise typer.Exit(0 if result.ok else 1)


if __name__ == "__main__":
    app()
