"""The main job, locally: the whole pipeline on a generated district, checked against its ground truth.

    python -m tools.runtime.demo [--patients 600] [--seed 1] [--resources-per-patient 12] [--keep DIR]

1. starts the local stack (Firestore and Pub/Sub emulators, FHIR server);
2. generates a district dataset with duplicates and the hard cases, with its ground truth;
3. loads ~70% of it in bulk, before anything listens (a bulk import sends no notifications);
4. starts the functions under functions-framework, wired to Pub/Sub like Eventarc, and a FHIR
   rest-hook Subscription that calls the relay function;
5. streams the rest as live creates, then live updates of some patients;
6. runs backfill over the whole store (what cleans the bulk-loaded part);
7. waits until the pipeline is quiet; counts the late references (data that reached a duplicate after
   its merge finished) the late-references function fixed live, and rewrites what it left (as ops'
   scheduled `reconcile --full` does; the target is none), prints the report;
8. checks the invariants against the ground truth and prints precision and recall;
9. tears everything down. Exit status 1 when an invariant fails.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ops.cli import print_report
from shared.bootstrap import batch_backfill, fhir_client, merge_deps, report_sources
from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.fhir.compartment import reference_search_plan
from shared.fhir.errors import PreconditionFailed
from shared.fhir.references import patient_id_of, references_any
from shared.logging import set_level
from shared.nik import NikError, normalise_nik
from shared.services.reconcile import reconcile
from shared.services.report import ReportSources, build_report, work_in_progress
from tools.calibration.evaluate_matching import pairs_of
from tools.dataset.generate import GroundTruth, Params, generate
from tools.dataset.load import dataset_counts, failures_table, load_dataset, report_table
from tools.runtime.pipeline import LocalPipeline
from tools.runtime.stack import LocalStack

console = Console()
app = typer.Typer(add_completion=False)

# Clinical types are read back in full for the invariant checks; Provenance is ours.
UPDATE_SHARE = 0.05


def _stream_updates(client: FhirClient, truth: GroundTruth, rng: random.Random) -> int:
    """Live updates: a phone number added to a sample of patients (read, change, write with ifMatch)."""
    sample = rng.sample(sorted(truth.patients), max(1, int(len(truth.patients) * UPDATE_SHARE)))

    def update(patient_id: str) -> bool:
        for _ in range(5):
            patient = client.read("Patient", patient_id)
            patient.setdefault("telecom", []).append(
                {"system": "phone", "value": f"+62812{rng.randrange(10**7, 10**8)}", "use": "mobile"})
            try:
                client.update(patient, if_match=patient["meta"]["versionId"])
                return True
            except PreconditionFailed:
                continue  # changed meanwhile (the finaliser, say): read again
        return False

    return sum(run_concurrently(update, sample, max_workers=4))


def _fixed_live(deps) -> int:
    """References to an already merged duplicate that the late-references function rewrote as they
    arrived (journal entries it marks ``fixed_live``), over every merge job."""
    return sum(1 for job in deps.jobs.all() for entry in deps.jobs.journal_entries(job["job_id"])
               if entry.get("fixed_live"))


def _all(client: FhirClient, resource_type: str) -> list[dict]:
    return list(client.search(resource_type, {"_count": "1000"}))


def check_invariants(client: FhirClient, sources: ReportSources, settings: Settings, truth: GroundTruth,
                     generated: Counter) -> tuple[list[tuple[str, bool, str]], dict]:
    """(name, passed, detail) per invariant, and the pair metrics."""
    patients = {p["id"]: p for p in _all(client, "Patient")}
    inactive = {pid for pid, p in patients.items() if p.get("active") is False}
    replaced_by = {}
    for pid, p in patients.items():
        for link in p.get("link") or []:
            if link.get("type") == "replaced-by":
                replaced_by[pid] = link["other"]["reference"].split("/")[-1]

    def root(pid: str) -> str:
        seen = set()
        while pid in replaced_by and pid not in seen:
            seen.add(pid)
            pid = replaced_by[pid]
        return pid

    results: list[tuple[str, bool, str]] = []

    # Nothing deleted: every generated resource is still there.
    plan, _ = reference_search_plan(client.capability())
    types = sorted(t for t in generated)
    counts = dict(zip(types, run_concurrently(
        lambda t: next(client.search_bundles(t, {"_summary": "count"}))["total"], types, max_workers=8)))
    missing = {t: generated[t] - counts.get(t, 0) for t in types if counts.get(t, 0) < generated[t]}
    results.append(("nothing deleted", not missing,
                    f"{sum(counts.values()):,} resources, missing: {missing or 'none'}"))

    # No reference to an inactive duplicate, in any type that can reference a patient.
    referencing_types = sorted(set(plan) & set(generated) - {"Patient"})
    duplicates = set(replaced_by)
    stale = Counter()
    for resource_type, resources in zip(referencing_types, run_concurrently(
            lambda t: _all(client, t), referencing_types, max_workers=8)):
        for resource in resources:
            if references_any(resource, duplicates):
                stale[resource_type] += 1
    results.append(("no reference to an inactive duplicate", not stale,
                     f"{sum(stale.values())} stale: {dict(stale)}" if stale else "none found"))

    # Every finished merge has a Provenance.
    jobs = list(sources.jobs.all())
    done = [j for j in jobs if j.get("status") == "done"]
    provenance_targets = {patient_id_of(ref.get("reference", "")) for prov in _all(client, "Provenance")
                          for ref in prov.get("target") or []}
    without = [j["job_id"] for j in done if j["master"] not in provenance_targets]
    results.append(("every merge with a Provenance", not without,
                    f"{len(done)} merges done, {len(without)} without Provenance"))
    unfinished = [j["job_id"] for j in jobs if j.get("status") not in ("done", "unmerged")]
    results.append(("no merge left unfinished", not unfinished, f"{len(unfinished)} unfinished"))

    # Merged pairs (final FHIR state) against the ground truth.
    clusters = defaultdict(list)
    for pid in patients:
        clusters[root(pid)].append(pid)
    predicted = pairs_of(c for c in clusters.values() if len(c) > 1)
    person_of = {pid: info.person for pid, info in truth.patients.items()}
    true_pairs = pairs_of(truth.persons.values())
    nik_of = {}
    for pid, p in patients.items():
        for ident in p.get("identifier") or []:
            if ident.get("system") == settings.nik_system:
                try:
                    nik_of[pid] = normalise_nik(str(ident.get("value")))
                except NikError:
                    pass
    nik_pairs = {pair for pair in true_pairs if pair[0] in nik_of and nik_of.get(pair[0]) == nik_of.get(pair[1])}
    false_merges = {pair for pair in predicted if person_of.get(pair[0]) != person_of.get(pair[1])}
    cases = Counter("/".join(sorted((truth.patients[a].case, truth.patients[b].case))) for a, b in false_merges)
    detail = f"; ground-truth cases: {dict(cases)}; pairs: {sorted(false_merges)[:5]}" if false_merges else ""
    results.append(("no false merge", not false_merges,
                    f"{len(false_merges)} pair(s) of different people merged{detail}"))

    # No active duplicates for a NIK, unless a human was asked to look at them.
    review_pairs = set()
    for item in sources.reviews.pending(limit=1_000_000):
        review_pairs |= pairs_of([item.patient_ids])
    active_dups = {pair for pair in nik_pairs if root(pair[0]) != root(pair[1])
                   and pair[0] not in inactive and pair[1] not in inactive}
    unflagged = {pair for pair in active_dups if pair not in review_pairs}
    results.append(("no unflagged active duplicate for a NIK", not unflagged,
                    f"{len(active_dups)} active NIK duplicate pair(s), {len(active_dups) - len(unflagged)} in review, "
                    f"{len(unflagged)} unflagged" + (f"; pairs: {sorted(unflagged)[:5]}" if unflagged else "")))

    correct = predicted - false_merges
    metrics = {
        "predicted_pairs": len(predicted),
        "precision": len(correct) / len(predicted) if predicted else 1.0,
        "recall_all": len(correct & true_pairs) / len(true_pairs) if true_pairs else 1.0,
        "recall_nik": len(correct & nik_pairs) / len(nik_pairs) if nik_pairs else 1.0,
        "nik_pairs": len(nik_pairs),
        "true_pairs": len(true_pairs),
        "nik_pairs_in_review": len(active_dups) - len(unflagged),
    }
    return results, metrics


def run_main_job(patients: int, seed: int, resources_per_patient: float, keep: Path | None) -> bool:
    began = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        timings[name] = time.perf_counter() - since
        return time.perf_counter()

    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="district-") as tmp:
        t = lap("stack start", began)
        console.rule("[bold]1. Local stack")
        console.print(stack.describe())
        # This process talks to the emulators too (backfill, checks): the Google clients read these.
        os.environ.update({k: stack.env[k] for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")})
        settings = Settings(project_id=f"district-{uuid.uuid4().hex[:8]}", fhir_base_url=stack.fhir.base_url)
        directory = keep or Path(tmp)

        console.rule("[bold]2. District dataset")
        truth = generate(directory, Params(patients=patients, seed=seed, resources_per_patient=resources_per_patient),
                         settings)
        generated: Counter = Counter()
        for phase_counts in dataset_counts(directory).values():
            generated.update(phase_counts)
        console.print(f"{patients:,} patient records of {len(truth.persons):,} people, "
                      f"{sum(generated.values()):,} resources of {len(generated)} types; cases: {dict(truth.cases())}")
        t = lap("generate", t)

        client = fhir_client(settings)
        console.rule("[bold]3. Bulk load (no notifications, like fhirStores.import)")
        bulk = load_dataset(directory, client, only="bulk", batch_size=settings.merge_batch_size, workers=4)
        console.print(report_table(bulk))
        t = lap("bulk load", t)

        console.rule("[bold]4. Functions up")
        env = {**stack.env, "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url}
        pipeline = LocalPipeline(settings, env, directory / "function-logs").start()
        try:
            sources = report_sources(settings)
            console.print(f"{len(pipeline.functions)} functions running: {', '.join(pipeline.functions)}")
            t = lap("functions start", t)

            console.rule("[bold]5. Live creates and updates (FHIR Subscription -> relay -> Pub/Sub)")
            streamed = load_dataset(directory, client, only="stream", batch_size=settings.merge_batch_size, workers=4)
            console.print(report_table(streamed))
            updated = _stream_updates(client, truth, random.Random(seed))
            console.print(f"{updated} live patient updates")
            t = lap("stream", t)

            console.rule("[bold]6. Backfill")
            progress = batch_backfill(settings, work_dir=directory / "backfill").run(f"backfill-{uuid.uuid4().hex[:8]}")
            console.print(f"backfill (batch): {progress.patients:,} patients in {progress.seconds:.1f} s "
                          f"({progress.patients_per_second:,.0f}/s); results {dict(progress.results)}; "
                          f"{progress.requests_published:,} merge requests; phases "
                          f"{ {k: round(v, 1) for k, v in progress.phase_seconds.items()} }; "
                          f"left to the incremental path: {len(progress.conflicted_groups)} group(s)")
            t = lap("backfill", t)

            console.rule("[bold]7. Waiting until the pipeline is quiet")
            with console.status("pipeline busy") as status:
                def tick():
                    status.update(f"pipeline busy: {pipeline.in_flight()} message(s) in flight")
                waited = pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(sources) > 0,
                                                   on_tick=tick, timeout=1800)
            deliveries = {name: s.delivered for name, s in pipeline.stats.items()}
            nacks = {name: s.nacked for name, s in pipeline.stats.items() if s.nacked}
            console.print(f"quiet after {waited:.1f} s; deliveries per function: {deliveries}"
                          + (f"; redelivered after a failure: {nacks}" if nacks else ""))
            t = lap("until quiet", t)
            fixed_live = _fixed_live(merge_deps(settings))
            # What the live fix left: references a search finds (the target: none), then what only a full
            # scan finds (references inside extensions, which no merge search or $everything reaches,
            # written before their merge; the weekly `reconcile --full`).
            left = reconcile(merge_deps(settings), full=False)
            late = reconcile(merge_deps(settings), full=True)
            console.print(f"late references (arrived after their merge): {fixed_live} fixed live by the "
                          f"late-references function, {sum(left.rewritten.values())} left for reconcile"
                          + (f" {dict(left.rewritten)}" if left.rewritten else "")
                          + f"; references only a full scan reaches (extensions): {dict(late.rewritten) or 'none'}")
            pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(sources) > 0, timeout=600)
            dead_letters = {k: v for k, v in pipeline.dead_letter_counts().items() if v}
            t = lap("reconcile", t)

            console.rule("[bold]8. Report")
            print_report(build_report(sources))

            console.rule("[bold]9. Invariants against the ground truth")
            results, metrics = check_invariants(client, sources, settings, truth, generated)
            results.append(("nothing dead-lettered", not dead_letters, str(dead_letters or "none")))
            results.append(("loads complete", not (bulk.failed or streamed.failed),
                            f"{len(bulk.failed) + len(streamed.failed)} failed entries"))
            table = Table(title="invariants")
            for column in ("invariant", "result", "detail"):
                table.add_column(column)
            for name, passed, detail in results:
                table.add_row(name, "[green]pass" if passed else "[red]FAIL", detail)
            console.print(table)
            console.print(
                f"merge decisions against the ground truth: precision [bold]{metrics['precision']:.4f}[/bold] "
                f"({metrics['predicted_pairs']} merged pairs), recall on NIK-bearing duplicates "
                f"[bold]{metrics['recall_nik']:.4f}[/bold] of {metrics['nik_pairs']} pairs "
                f"({metrics['nik_pairs_in_review']} more in review), recall on all same-person pairs "
                f"{metrics['recall_all']:.4f} of {metrics['true_pairs']}")
            if bulk.failed or streamed.failed:
                console.print(failures_table(bulk) if bulk.failed else failures_table(streamed))
        finally:
            pipeline.stop()
        console.rule("[bold]10. Tearing down")
    lap("total", began)
    console.print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    return all(passed for _, passed, _ in results)


@app.command()
def main(patients: int = typer.Option(600, "--patients", min=10),
         seed: int = typer.Option(1, "--seed"),
         resources_per_patient: float = typer.Option(12.0, "--resources-per-patient", min=0.0),
         keep: Path | None = typer.Option(None, "--keep", help="write the dataset and function logs here")):
    """Run the whole pipeline locally on a generated district and check it against the ground truth."""
    set_level(logging.WARNING)  # the functions log to their own files; this screen shows progress
    if not run_main_job(patients, seed, resources_per_patient, keep):
        console.print("[red]invariants failed")
        raise typer.Exit(1)
    console.print("[green]all invariants hold")


if __name__ == "__main__":
    app()
