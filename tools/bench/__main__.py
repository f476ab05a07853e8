"""``python -m tools.bench compare|scale|backfill|partition|blocking|scoring`` — see README "Performance"."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.config import Settings
from shared.fhir.client import FhirClient
from tools.bench.check import check_state
from tools.bench.contenders import ReportDeduplicator, job_profile, job_timeline, report_types, run_pipeline
from tools.bench.dataset import BenchStore, build_store, clone_server, load_template
from tools.bench.emulators import emulator_env
from tools.bench.floor import planned_writes, run_floor
from tools.runtime.fault_proxy import FaultProxy

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The field report's cleanup as a benchmark.")
console = Console()


def request_kind(method: str, path: str, base_path: str) -> str:
    """search / read / update / batch / create / metadata, from a proxied request line."""
    rel, _, query = path.removeprefix(base_path).lstrip("/").partition("?")
    if method == "GET":
        return "metadata" if rel == "metadata" else ("search" if "/" not in rel else "read")
    if method == "POST":
        return "batch" if rel == "" else "create"
    return {"PUT": "update", "DELETE": "delete"}.get(method, method.lower())


def proxy_counts(proxy: FaultProxy) -> tuple[Counter, dict[str, float]]:
    """Requests by kind, and the server's time by kind (seconds, without the added latency)."""
    base_path = "/" + proxy.base_url.split("/", 3)[3] if proxy.base_url.count("/") >= 3 else ""
    counts: Counter = Counter()
    server_seconds: dict[str, float] = {}
    for r in list(proxy.requests):
        kind = request_kind(r.method, r.path, base_path)
        counts[kind] += 1
        server_seconds[kind] = server_seconds.get(kind, 0.0) + r.upstream_seconds
    return counts, {k: round(v, 1) for k, v in server_seconds.items()}


def compare(work: Path, *, niks: int, background: int, resources_per_patient: float, background_resources: float,
            latency: float, jitter: float, v1_niks: int, threads: int, contenders: list[str], seed: int,
            stack_env: dict[str, str] | None = None) -> dict:
    """Runs the contenders on clones of one store; ``stack_env`` = running emulators (else a
    LocalStack is started for our pipeline and stopped after it)."""
    from tools.runtime.stack import LocalStack

    results: dict = {"settings": {"niks": niks, "background_patients": background,
                                  "resources_per_patient": resources_per_patient, "latency_s": latency,
                                  "jitter_s": jitter, "v1_niks": v1_niks, "threads_per_function": threads,
                                  "cpus": os.cpu_count()}, "contenders": {}}
    began = time.perf_counter()
    shape = {"niks": niks, "background": background, "resources_per_patient": resources_per_patient,
             "background_resources": background_resources, "seed": seed}
    built = work / "template" / "built.json"
    reuse = built.exists() and json.loads(built.read_text()) == shape
    if reuse:   # a --work-dir kept from an earlier run with the same shape: same bytes, no rebuild
        store = BenchStore.open(work / "store")
    else:
        store = build_store(work / "store", niks=niks, background=background,
                            resources_per_patient=resources_per_patient, background_resources=background_resources,
                            seed=seed)
    counts = store.counts
    patients_in_niks = sum(len(v) for v in store.niks.values())
    results["store"] = {"resources": sum(counts.values()), "patients": counts.get("Patient", 0),
                        "patients_in_niks": patients_in_niks, "types": len(counts)}
    console.print(f"store: {sum(counts.values()):,} resources of {len(counts)} types, {counts.get('Patient', 0):,} "
                  f"patients; {niks} NIKs hold {patients_in_niks} patients "
                  f"(built in {time.perf_counter() - began:.1f} s)")
    if reuse:
        console.print(f"reusing the store and template server data in {work}")
    else:
        load_seconds, loaded = load_template(store, work / "template")
        built.write_text(json.dumps(shape) + "\n")
        console.print(f"loaded straight into the template server in {load_seconds:.1f} s "
                      f"({loaded / load_seconds:,.0f}/s)")
    settings = Settings()
    nik_list = sorted(store.niks)
    writes = planned_writes(store, settings)
    results["store"]["writes_needed"] = len(writes)

    def measured(name: str, run, *, subset: list[str] | None = None, extra_setup=None):
        server = clone_server(work / "template", work / name)
        proxy = FaultProxy(server.base_url, latency=latency, jitter=jitter, seed=seed).start()
        try:
            outcome = run(server, proxy)
            kinds, server_seconds = proxy_counts(proxy)
        finally:
            proxy.stop()
        checked_store = store if subset is None else BenchStore(store.directory, {n: store.niks[n] for n in subset})
        with FhirClient(server.base_url) as direct:
            state = check_state(direct, checked_store)
        server.stop()
        return outcome, (kinds, server_seconds), state

    def record(name: str, seconds: float, proxied: tuple[Counter, dict[str, float]], state, done_niks: int,
               **extra) -> None:
        kinds, server_seconds = proxied
        total = sum(kinds.values())
        entry = {"seconds": seconds, "niks_run": done_niks, "requests": total, "requests_by_kind": dict(kinds),
                 "server_seconds_by_kind": server_seconds, "server_seconds": round(sum(server_seconds.values()), 1),
                 "requests_per_nik": total / done_niks, "state_ok": state.ok, "problems": state.problems[:10],
                 "problem_count": len(state.problems), "signature": state.signature, "extra_resources": state.extra,
                 **extra}
        if done_niks != niks:
            entry["extrapolated_seconds"] = seconds / done_niks * niks
            entry["extrapolated_requests"] = total / done_niks * niks
        results["contenders"][name] = entry
        console.print(f"[bold]{name}[/bold]: {seconds:.1f} s for {done_niks} NIKs, {total:,} FHIR requests "
                      f"{dict(kinds)}, server busy {entry['server_seconds']} s {server_seconds}; "
                      f"state {'OK' if state.ok else 'WRONG: ' + '; '.join(state.problems[:3])}")

    if "floor" in contenders:
        def floor_run(server, proxy):
            with FhirClient(proxy.base_url, max_connections=32) as fhir:
                return run_floor(fhir, writes)
        floor, kinds, state = measured("floor", floor_run)
        record("floor", floor.seconds, kinds, state, niks, writes=floor.writes, bundles=floor.bundles,
               failed_writes=floor.failed)

    for version, name in ((2, "report-v2"), (1, "report-v1")):
        if name not in contenders:
            continue
        subset = nik_list if version == 2 else nik_list[:max(1, min(v1_niks, niks))]

        def report_run(server, proxy, version=version, subset=subset):
            with FhirClient(proxy.base_url, max_connections=32) as fhir:
                types = report_types(fhir, counts)
                proxy.reset_counts()
                dedup = ReportDeduplicator(fhir, settings, types, version=version)
                t0 = time.perf_counter()
                stats = dedup.run(subset)
                return time.perf_counter() - t0, stats, types

        (seconds, stats, types), kinds, state = measured(name, report_run, subset=subset)
        results["report_types"] = types
        record(name, seconds, kinds, state, len(subset), resources_updated=stats.resources_updated,
               failed_writes=len(stats.failures))

    if "ours" in contenders:
        stack = None if stack_env else LocalStack(work_dir=work / "stack").start()
        try:
            stack_env = stack_env or emulator_env(stack)

            def ours_run(server, proxy):
                settings_ours = Settings(project_id=f"bench-{uuid.uuid4().hex[:8]}", fhir_base_url=proxy.base_url)
                watched = {f"emulator {k}": v for k, v in (stack.pids.items() if stack else ()) if k != "fhir"}
                return run_pipeline(settings_ours, stack_env, nik_list, work / "ours-logs",
                                    threads_per_function=threads, on_start=proxy.reset_counts,
                                    watched_pids={**watched, "FHIR server": server.process.pid})

            run, kinds, state = measured("ours", ours_run)
        finally:
            if stack is not None:
                stack.stop()
        statuses = Counter(j.get("status") for j in run.jobs)
        record("ours", run.seconds, kinds, state, niks, jobs=dict(statuses), profile=job_profile(run.jobs),
               timeline=job_timeline(run.jobs),
               peak_memory_mib={k: round(v / 1024, 1) for k, v in run.memory_kib.items()},
               cpu_seconds=run.cpu_seconds,
               dead_letters=run.dead_letters, log_dir=run.log_dir)
    return results


def summary_table(results: dict) -> Table:
    entries = results["contenders"]
    niks = results["settings"]["niks"]
    ours = entries.get("ours")
    floor = entries.get("floor")

    def wall(e):
        return e.get("extrapolated_seconds", e["seconds"])

    table = Table(title=f"{niks} NIKs, {results['settings']['latency_s'] * 1000:.0f} ms ± "
                        f"{results['settings']['jitter_s'] * 1000:.0f} ms per FHIR round trip")
    for column in ("contender", "wall time", "FHIR requests", "requests/NIK", "÷ ours (wall)", "state"):
        table.add_column(column, justify="left" if column in ("contender", "state") else "right")
    for name in ("report-v1", "report-v2", "ours", "floor"):
        e = entries.get(name)
        if not e:
            continue
        note = f" (extrapolated from {e['niks_run']} NIKs)" if "extrapolated_seconds" in e else ""
        requests = e.get("extrapolated_requests", e["requests"])
        ratio = f"{wall(e) / wall(ours):.1f}x" if ours and wall(ours) == wall(ours) else "-"
        table.add_row(name, f"{wall(e):,.1f} s{note}", f"{requests:,.0f}", f"{e['requests_per_nik']:.0f}", ratio,
                      "OK" if e["state_ok"] else f"WRONG ({e['problem_count']})")
    if ours and floor:
        table.caption = f"ours / floor = {wall(ours) / wall(floor):.2f}x"
    return table


@app.command("compare")
def compare_command(
    niks: int = typer.Option(68, help="benchmark NIKs (2-10 patients each)"),
    background: int = typer.Option(2000, help="single (non-duplicate) patients around them"),
    resources_per_patient: float = typer.Option(30.0, help="mean clinical resources per duplicate patient"),
    background_resources: float = typer.Option(10.0, help="mean clinical resources per background patient"),
    latency: float = typer.Option(0.150, help="added round-trip delay per FHIR request, seconds"),
    jitter: float = typer.Option(0.050, help="uniform jitter around the delay, seconds"),
    v1_niks: int = typer.Option(8, help="run the sequential v1 on this many NIKs and extrapolate to all"),
    threads: int = typer.Option(16, help="threads per functions-framework process (each function's concurrency); "
                                     "16 was fastest here, against 8, 12, 24 and 32"),
    only: str = typer.Option("floor,report-v2,ours,report-v1", help="contenders to run, comma-separated"),
    seed: int = typer.Option(68),
    work_dir: Path | None = typer.Option(None, help="keep the store, servers' data and logs here; a later run "
                                                    "with the same shape reuses the store"),
    json_out: Path | None = typer.Option(None, help="write all figures as JSON here"),
):
    """The 68-NIK comparison: report v1 and v2, our pipeline and the floor, on the same store."""
    contenders = [c.strip() for c in only.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        work = work_dir or Path(tmp)
        results = compare(work, niks=niks, background=background, resources_per_patient=resources_per_patient,
                          background_resources=background_resources, latency=latency, jitter=jitter,
                          v1_niks=v1_niks, threads=threads, contenders=contenders, seed=seed)
    console.print(summary_table(results))
    ours = results["contenders"].get("ours")
    if ours:
        console.print("ours, per merge job (from the job documents):", ours.get("profile"))
        console.print("ours, peak memory per function (MiB, VmHWM):", ours.get("peak_memory_mib"))
        console.print("ours, CPU seconds per process during the run:", ours.get("cpu_seconds"))
    signatures = {n: e["signature"] for n, e in results["contenders"].items() if "extrapolated_seconds" not in e}
    same = len(set(signatures.values())) <= 1
    console.print(f"same end state (modulo master) across {', '.join(signatures)}: {'yes' if same else 'NO'} "
                  f"{signatures}")
    results["same_state"] = same
    if json_out:
        json_out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if not same or not all(e["state_ok"] for e in results["contenders"].values()):
        raise typer.Exit(1)


@app.command("scale")
def scale_command(
    patients: str = typer.Option("1000,10000,100000", help="store sizes (patients), comma-separated"),
    events: int = typer.Option(200, help="patient writes for the incremental-matching measurement"),
    json_out: Path | None = typer.Option(None),
):
    """Backfill patients/s and incremental matching events/s and p95 latency as the store grows."""
    import logging

    from shared.logging import set_level
    from tools.bench.scaling import run_scaling

    set_level(logging.WARNING)  # the backfill runs in this process: its per-patient lines would flood the screen
    sizes = [int(s) for s in patients.split(",") if s.strip()]
    results = run_scaling(sizes, events=events, console=console)
    if json_out:
        json_out.write_text(json.dumps(results, indent=1, default=str) + "\n")


@app.command("backfill")
def backfill_command(
    patients: str = typer.Option("10000,100000", help="store sizes (patients), comma-separated"),
    sources: str = typer.Option("fhir,ndjson", help="fhir and/or ndjson"),
    engines: str = typer.Option("", help="the backfill's --engine per run, comma-separated (duckdb, spark, none; "
                                "empty: its default)"),
    work_dir: Path | None = typer.Option(None, help="keep the datasets and checkpoints here"),
    json_out: Path | None = typer.Option(None),
):
    """The batch backfill end to end (read, decide, index, publish): patients/s and peak memory."""
    from tools.bench.backfill import run_one

    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-backfill-") as tmp:
        for size in [int(s) for s in patients.split(",") if s.strip()]:
            for source in [s.strip() for s in sources.split(",") if s.strip()]:
                for engine in [e.strip() for e in engines.split(",") if e.strip()] or [None]:
                    results.append(run_one(size, source, work_dir or Path(tmp), console, engine))
    if json_out:
        json_out.write_text(json.dumps(results, indent=1) + "\n")


@app.command("partition")
def partition_command(
    patients: str = typer.Option("100000,300000,1000000", help="store sizes (patients), comma-separated"),
    workers: int = typer.Option(os.cpu_count() or 2, help="deciding processes (the backfill's --decide-workers)"),
    work_dir: Path = typer.Option(..., help="the datasets are generated here once and reused"),
    engine: str | None = typer.Option(None, help="score first with this Splink engine (duckdb); none by default"),
    json_out: Path | None = typer.Option(None),
):
    """The backfill's decide phase in process (no emulators): time per step, component and part sizes,
    candidate pairs, peak memory per process."""
    from tools.bench.partition import run_size

    results = [run_size(int(size), work_dir, workers, console, engine)
               for size in patients.split(",") if size.strip()]
    if json_out:
        json_out.write_text(json.dumps(results, indent=1) + "\n")


@app.command("blocking")
def blocking_command(
    patients: str = typer.Option("10000,100000", help="store sizes (patients), comma-separated"),
    work_dir: Path = typer.Option(..., help="the datasets are generated here once and reused"),
    json_out: Path | None = typer.Option(None),
):
    """Pairs within candidate blocks per patient and blocking recall (true pairs sharing a group), per
    block kind: nothing decided (tools/bench/blocking.py)."""
    from tools.bench.blocking import run_size

    results = [run_size(int(size), work_dir, console) for size in patients.split(",") if size.strip()]
    if json_out:
        json_out.write_text(json.dumps(results, indent=1) + "\n")


@app.command("scoring")
def scoring_command(
    patients: str = typer.Option("10000,100000", help="store sizes (patients), comma-separated"),
    engines: str = typer.Option("duckdb,spark", help="duckdb and/or spark"),
    spark_master: str = typer.Option("local[2]", help="Spark master URL for the spark engine"),
    with_decide: bool = typer.Option(False, "--decide", help="also time deciding with and without the scores"),
    work_dir: Path | None = typer.Option(None, help="keep the datasets and scores here"),
    json_out: Path | None = typer.Option(None),
):
    """The backfill's score phase per Splink engine: predict and cluster time, pairs, clusters, memory."""
    from tools.bench.scoring import run_size

    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-scoring-") as tmp:
        for size in [int(s) for s in patients.split(",") if s.strip()]:
            results += run_size(size, [e.strip() for e in engines.split(",") if e.strip()], work_dir or Path(tmp),
                                spark_master, with_decide, console)
    if json_out:
        json_out.write_text(json.dumps(results, indent=1) + "\n")


@app.command("incremental")
def incremental_command(
    indexed: int = typer.Option(100_000, help="patients indexed (by the batch backfill) before the events"),
    events: int = typer.Option(500, help="patient change events timed one at a time"),
    work_dir: Path | None = typer.Option(None, help="keep the dataset and the backfill's files here"),
    profile: bool = typer.Option(False, help="also print where the events' time goes (cProfile, cumulative)"),
    json_out: Path | None = typer.Option(None),
):
    """Event in -> decision stored (the match function's use case, real adapters): p50/p95/p99 ms."""
    import logging

    from shared.logging import set_level
    from tools.bench.incremental import run

    set_level(logging.WARNING)  # one log line per event would be timed too
    with tempfile.TemporaryDirectory(prefix="dedup-incremental-") as tmp:
        result = run(indexed, events, work_dir or Path(tmp), console, profile=profile)
    shown = {k: v for k, v in result.items() if k != "profile"}
    console.print_json(json.dumps(shown))
    if profile:
        console.print(result["profile"], markup=False, highlight=False)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    app()
