"""`dedup` (or `python -m ops`): the district ops team's command-line tool.

Works against a real district with `--project`/`--fhir-url` or the `DEDUP_*` environment variables,
and against the local stack with `--env-file .stack/env` (or `DEDUP_ENV_FILE`), the file `dedup up`
writes; inside the checkout a running stack's `.stack/env` is found without either. Commands beyond
this file's live in their own modules (``ops/stack.py``, ``load.py``, ``history.py``,
``explicit_merge.py``), registered at the end; every failure goes through ``ops/errors.py``. Output
never contains a NIK; patient details appear only on request (`review show --details`), on the
operator's terminal, never in a log.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.context import print_mapping as _print_mapping
from ops.context import settings_of as _settings
from shared.config import Settings

app = typer.Typer(help="Patient deduplication: ops commands.", no_args_is_help=True, add_completion=False)
review_app = typer.Typer(help="Uncertain matches waiting for a human decision.", no_args_is_help=True)
app.add_typer(review_app, name="review")
console = Console()
err_console = Console(stderr=True)


def _load_env_file(path: Path | None) -> None:
    """Sets the variables of a dotenv file that the environment does not set already."""
    if path is not None:
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def _running_stack_env() -> Path | None:
    """``.stack/env`` of a running local stack in this directory or a parent (run inside the repo),
    used when neither --env-file nor DEDUP_ENV_FILE nor a DEDUP_FHIR_BASE_URL says otherwise."""
    if os.environ.get("DEDUP_FHIR_BASE_URL") or os.environ.get("DEDUP_PROJECT_ID"):
        return None
    for directory in (Path.cwd(), *Path.cwd().parents):
        candidate = directory / ".stack" / "env"
        if candidate.is_file():
            return candidate
    return None


def _version(value: bool) -> None:
    if value:
        from ops import version

        console.print(f"dedup {version()}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    project: str | None = typer.Option(
        None, help="Google Cloud project (default: DEDUP_PROJECT_ID, from the environment or --env-file)"),
    fhir_url: str | None = typer.Option(
        None, help="FHIR base URL (default: DEDUP_FHIR_BASE_URL, from the environment or --env-file)"),
    env_file: Path | None = typer.Option(
        None, "--env-file", envvar="DEDUP_ENV_FILE", exists=True, dir_okay=False,
        help="dotenv file of DEDUP_* settings and emulator hosts, used for the variables the environment does "
             "not set (the local stack writes .stack/env; inside the repo a running stack's is found by itself)"),
    log_json: bool = typer.Option(False, "--log-json", help="Structured JSON log lines (INFO and up) on stderr; "
                                  "default: only warnings, one readable line each"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit"),
):
    from shared.logging import use_terminal_output

    use_terminal_output(json_lines=log_json)
    env_file = env_file or _running_stack_env()
    _load_env_file(env_file)
    ctx.meta["env_file"] = env_file   # `status` finds the stack that wrote it beside it
    # Built when a command first needs them (ops.context.settings_of): `--version`, `status` of the local
    # stack and usage errors need no configuration, and a refused one is reported there in one line.
    ctx.obj = {k: v for k, v in {"project_id": project, "fhir_base_url": fhir_url}.items() if v}


def _fail(message: str, code: int = 2) -> None:
    from ops.errors import NotFoundProblem, OpsError, UsageProblem

    raise {2: UsageProblem, 3: NotFoundProblem}.get(code, OpsError)(message)


# --- force-merge -----------------------------------------------------------------------------------
@app.command("force-merge")
def force_merge(
    ctx: typer.Context,
    nik: str = typer.Argument(
        "-", help="The NIK, or '-' to read it from standard input (keeps it out of shell history)"),
    reason: str = typer.Option(..., help="Why (kept in the audit trail)"),
    requested_by: str = typer.Option(..., "--by", help="Who asks (kept in the audit trail)"),
    patient_id: list[str] = typer.Option([], "--patient-id", help="Patient ids a human confirmed are this person"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Publish a NIK to the ops topic: every patient with it is indexed and merged by the rules
    (named --patient-id ones as human-confirmed). The NIK is never printed."""
    from shared.bootstrap import publisher
    from shared.messages import ForceMerge
    from shared.nik import NikError, nik_token, parse_nik

    settings = _settings(ctx)
    raw = sys.stdin.readline().strip() if nik == "-" else nik
    try:
        parsed = parse_nik(raw)
    except NikError as error:
        _fail(f"not a valid NIK ({error.reason}); nothing was published")
    message = ForceMerge(nik=parsed.value, reason=reason, requested_by=requested_by, patient_ids=tuple(patient_id))
    message_id = publisher(settings).send(message)
    if as_json:
        console.print_json(json.dumps({"nik_token": nik_token(parsed.value, settings.nik_hash_key),
                                       "message_id": message_id}))
        return
    console.print(f"published force-merge for NIK token [bold]{nik_token(parsed.value, settings.nik_hash_key)}[/bold]"
                  f" (message {message_id})")


# --- backfill --------------------------------------------------------------------------------------
# The batch backfill's scoring engines; the default is the fastest measured on one machine (docs/benchmarks.md,
# "Scoring engines"). The district's Cloud Run Job passes its own (infra: var.backfill_engine).
BACKFILL_ENGINES = ("duckdb", "spark", "none")
BACKFILL_ENGINE_DEFAULT = "none"


@app.command()
def backfill(
    ctx: typer.Context,
    run_id: str | None = typer.Option(
        None, envvar="CLOUD_RUN_EXECUTION",
        help="Resume this run (default: a new run id is printed; in a Cloud Run Job the execution's name, so a "
             "retried task resumes its execution's run)"),
    ndjson: Path | None = typer.Option(
        None, exists=True, file_okay=False,
        help="Read Patients from this folder of NDJSON (Patient*.ndjson, a $export download with manifest.json, "
             "or a fhirStores.export copy) instead of the FHIR server"),
    work_dir: Path | None = typer.Option(None, help="Checkpoint files (default .backfill/<run id>)"),
    keep_dir: Path | None = typer.Option(
        None, file_okay=False,
        help="A durable folder (a bucket the Cloud Run Job mounts) keeping a copy of the decisions, so a run "
             "whose work directory is lost after deciding resumes"),
    page_size: int = typer.Option(1000, min=1, max=1000, help="Patients per FHIR page"),
    read_workers: int = typer.Option(4, min=1, max=32, help="FHIR pages fetched at once (offset-paging servers)"),
    write_workers: int = typer.Option(4, min=1, max=32, help="Firestore batches committed at once"),
    decide_workers: int = typer.Option(os.cpu_count() or 1, min=1, max=64,
                                       help="Processes deciding parts of the store at once (default: the CPUs)"),
    no_fhir: bool = typer.Option(False, "--no-fhir", help="With --ndjson: no FHIR server at all"),
    copy_first: bool = typer.Option(
        False, "--copy-first",
        help="With --ndjson: copy the Patients into the work directory first, in one sequential read (a bucket "
             "mounted with Cloud Storage FUSE, as the Cloud Run Job mounts the export bucket)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what it would merge and review; write nothing"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
    engine: str = typer.Option(BACKFILL_ENGINE_DEFAULT, help="Splink engine scoring the candidate pairs in bulk "
                               "first: duckdb (in process), spark (--spark-master), or none (the model scores each "
                               "pair as it is decided; faster on one machine: docs/benchmarks.md)"),
    spark_master: str | None = typer.Option(None, help="With --engine spark: the Spark master URL (local[2], "
                                            "spark://host:7077, yarn); none inside a Spark batch"),
):
    """Match every Patient in one pass: read all, decide in memory with the live path's rules, write the
    index in bulk beside live events, publish the merges. Resumable: run again with the same --run-id
    after a crash or Ctrl-C."""
    import logging

    from ops.errors import UsageProblem
    from shared.bootstrap import batch_backfill, scoring_engine
    from shared.logging import set_level
    from shared.ports.pair_scoring import EngineUnavailable

    if engine not in BACKFILL_ENGINES:
        raise UsageProblem(f"--engine {engine}: one of {', '.join(BACKFILL_ENGINES)}")
    if spark_master is not None and engine != "spark":
        raise UsageProblem("--spark-master goes with --engine spark")
    try:  # fails now, in one line, rather than after reading the store (the run reuses the session)
        scoring = scoring_engine(engine, spark_master)
        if scoring is not None and engine == "spark":
            scoring.spark_session()
    except EngineUnavailable as error:
        raise UsageProblem(str(error), "--engine duckdb scores in process, --engine none not at all") from error
    set_level(logging.WARNING)  # one line per patient would drown the progress bars
    try:
        settings = _settings(ctx)
        run_id = run_id or f"backfill-{uuid.uuid4().hex[:12]}"
        work_dir = work_dir or Path(".backfill") / run_id
        with _PhaseBars() as bars:
            job = batch_backfill(settings, work_dir=work_dir, ndjson=ndjson, page_size=page_size,
                                 read_workers=read_workers, write_workers=write_workers,
                                 decide_workers=decide_workers, listener=bars, with_fhir=not no_fhir,
                                 copy_first=copy_first, engine=None if engine == "none" else engine,
                                 spark_master=spark_master, keep_dir=keep_dir)
            if dry_run:
                progress, plan = job.dry_run()
            else:
                err_console.print(f"backfill run [bold]{run_id}[/bold] (resume with --run-id {run_id})")
                progress, plan = job.run(run_id), None
    finally:
        set_level(logging.INFO)  # the process may go on (tests run the CLI in theirs)
    summary = _backfill_summary(progress)
    if plan is not None:
        summary.update({"would_merge": plan.merges, "would_review": plan.reviews})
    if as_json:
        console.print_json(json.dumps(summary, default=str))
        return
    if plan is not None:
        for title, rows in (("would merge", plan.merges), ("would send to review", plan.reviews)):
            table = Table(title=f"{title}: {len(rows)}")
            for column in (rows[0] if rows else {"-": ""}):
                table.add_column(column)
            for row in rows:
                table.add_row(*(", ".join(v) if isinstance(v, list) else str(v) for v in row.values()))
            console.print(table)
    _print_mapping("backfill summary", {k: v for k, v in summary.items() if not k.startswith("would_")})


def _backfill_summary(progress) -> dict:
    return {"run_id": progress.run_id, "status": progress.status, "source": progress.source,
            "patients": progress.patients, "seconds": round(progress.seconds, 1),
            "patients_per_second": round(progress.patients_per_second, 1),
            "phase_seconds": {k: round(v, 1) for k, v in progress.phase_seconds.items()},
            "peak_rss_mb": round(progress.peak_rss_mb), "worker_peak_rss_mb": round(progress.worker_peak_rss_mb),
            "create_only": progress.create_only,
            "decisions": dict(progress.results), "review_items_proposed": progress.reviews_proposed,
            "merge_requests_published": progress.requests_published, **progress.counts,
            "left_to_incremental_groups": len(progress.conflicted_groups)}


class _PhaseBars:
    """One rich progress bar per phase, with rate and time left; the batch backfill's ``Listener``."""

    def __init__(self):
        from rich.progress import TimeRemainingColumn

        self._bar = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=err_console,
                             disable=not err_console.is_terminal and os.environ.get("CI") == "true")
        self._task = None

    def __enter__(self):
        self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        self._bar.__exit__(*exc)

    def phase(self, name: str, total: int | None) -> None:
        self._task = self._bar.add_task(name, total=total, rate="")

    def advance(self, done: int) -> None:
        self._bar.advance(self._task, done)
        speed = self._bar.tasks[-1].speed
        self._bar.update(self._task, rate=f"{speed:,.0f}/s" if speed else "")


# --- review ----------------------------------------------------------------------------------------
def _review_service(settings: Settings):
    from shared.bootstrap import review_service

    return review_service(settings)


@review_app.command("list")
def review_list(ctx: typer.Context, reason: str | None = typer.Option(None, help="Only this reason"),
                status: str = typer.Option("pending", help="pending, approved, rejected or closed (closed by a "
                                                           "later decision: each with its closing reason)"),
                limit: int = typer.Option(200), as_json: bool = typer.Option(False, "--json")):
    """Review items of one status (pending by default): id, reason, patients, evidence (no patient details)."""
    from shared.domain.review import ReviewStatus

    if status not in {str(s) for s in ReviewStatus}:
        _fail(f"unknown status {status!r}: one of {', '.join(str(s) for s in ReviewStatus)}", 2)
    service = _review_service(_settings(ctx))
    found = service.pending(reason, limit) if status == "pending" else service.with_status(ReviewStatus(status),
                                                                                            reason, limit)
    items = [item.as_dict() for item in found]
    if as_json:
        console.print_json(json.dumps(items, default=str))
        return
    # One block per item, ids whole on their own lines (soft wrap: never cut to the terminal's width).
    console.print(f"[bold]{len(items)} {status} review item(s)[/bold]")
    for item in items:
        evidence = item.get("evidence") or {}
        scores = {k: v for k, v in evidence.items() if isinstance(v, (int, float, str)) and k != "nik_token"}
        closed = f"  {item['closed_reason']} by {item.get('closed_by')}" if item.get("closed_reason") else ""
        console.print(f"{item['id']}  {item['reason']}{closed}  {json.dumps(scores)}", soft_wrap=True,
                      highlight=False, markup=False)
        for patient_id in item["patient_ids"]:
            console.print(f"    {patient_id}", soft_wrap=True, highlight=False, markup=False)


@review_app.command("show")
def review_show(ctx: typer.Context, item_id: str,
                details: bool = typer.Option(False, "--details", help="Also show names, birth dates, identifiers"),
                as_json: bool = typer.Option(False, "--json", help="The item (and --details) as one JSON document")):
    """One item with its evidence; --details reads the patients from FHIR for you to compare."""
    service = _review_service(_settings(ctx))
    item = _or_fail(lambda: service.get(item_id))
    if as_json:
        shown = item.as_dict() | ({"patients": service.patient_details(item)} if details else {})
        console.print_json(json.dumps(shown, default=str))
        return
    console.print_json(json.dumps(item.as_dict(), default=str))
    if item.decision.get("closed_reason"):
        console.print(f"closed: {item.decision['closed_reason']} by {item.decision.get('closed_by')} at "
                      f"{item.decision.get('closed_at')}", soft_wrap=True, highlight=False, markup=False)
    model = (item.evidence or {}).get("model")
    if model:
        # The model's waterfall: each comparison's level and match weight, the rule that fired, the version.
        table = Table(title=f"model {model['model_version']}: rule {item.evidence.get('rule')}, evidence "
                            f"{model['evidence_weight']} (identity {model['identity_weight']})")
        for column in ("comparison", "level", "weight"):
            table.add_column(column)
        for name, entry in model["comparisons"].items():
            table.add_row(name, entry["level"], f"{entry['weight']:+.2f}")
        console.print(table)
    if details:
        table = Table(title="patients (confidential)")
        for column in ("id", "name", "birthDate", "gender", "identifiers", "active", "source"):
            table.add_column(column)
        for d in service.patient_details(item):
            table.add_row(d["id"], d.get("name", ""), str(d.get("birthDate") or ""), str(d.get("gender") or ""),
                          "\n".join(d.get("identifiers") or []), str(d.get("active", "")), str(d.get("source") or ""))
        console.print(table)


@review_app.command("approve")
def review_approve(ctx: typer.Context, item_id: str, by: str = typer.Option(..., "--by", help="Reviewer"),
                   patients: list[str] = typer.Option(None, "--patient", help="A record of the item that is "
                                                      "the same person (repeat; at least two; default all)"),
                   as_json: bool = typer.Option(False, "--json")):
    """Merge the item's patients, or the chosen ones (the newborn and twin rules still apply)."""
    result = _or_fail(lambda: _review_service(_settings(ctx)).approve(item_id, by, patient_ids=patients or None))
    if as_json:
        console.print_json(json.dumps({"id": item_id, **result}))
        return
    console.print(f"approved {item_id}: merge request(s) {result['published'] or 'already open'}"
                  + (f"; refused by rule: {result['refused']}" if result["refused"] else ""))


@review_app.command("track-pending")
def review_track_pending(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """Once, after upgrading: groups learn the items left pending before they tracked them (so those close
    themselves from then on), and the items a later decision already answered close now."""
    result = _review_service(_settings(ctx)).track_pending()
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(f"{result['tracked']} pending item(s) of {result['groups']} group(s) tracked; "
                  f"{result['closed']} closed as already answered")


@review_app.command("reject")
def review_reject(ctx: typer.Context, item_id: str, by: str = typer.Option(..., "--by", help="Reviewer"),
                  as_json: bool = typer.Option(False, "--json")):
    """Not the same person: remembered, never proposed again."""
    _or_fail(lambda: _review_service(_settings(ctx)).reject(item_id, by))
    if as_json:
        console.print_json(json.dumps({"id": item_id, "status": "rejected"}))
        return
    console.print(f"rejected {item_id}: remembered as do-not-match")


def _or_fail(action):
    from shared.services.review import ReviewAlreadyDecided, ReviewItemNotFound, ReviewRefused
    from shared.services.unmerge import UnmergeRefused

    try:
        return action()
    except (ReviewItemNotFound, KeyError) as error:
        _fail(str(error).strip("'"), 3)
    except (ReviewAlreadyDecided, ReviewRefused) as error:
        _fail(str(error), 1)
    except UnmergeRefused as error:
        _fail(str(error), 2)


# --- merge jobs ------------------------------------------------------------------------------------
@app.command()
def status(ctx: typer.Context, job_id: str | None = typer.Argument(None, help="A merge job (default: the stack)"),
           as_json: bool = typer.Option(False, "--json")):
    """A merge job: state, master, duplicates, per-type progress. Without JOB_ID: the local stack's
    components (`dedup up`) and whether each answers."""
    if job_id is None:
        from ops.stack import stack_status

        raise typer.Exit(stack_status(as_json, ctx.meta.get("env_file")))
    from shared.bootstrap import merge_deps

    job = merge_deps(_settings(ctx)).jobs.get(job_id)
    if job is None:
        _fail(f"no merge job {job_id}", 3)
    if as_json:
        console.print_json(json.dumps(job, default=str))
        return
    _print_mapping(f"merge job {job_id}", {k: job.get(k) for k in (
        "status", "master", "duplicates", "reason", "requested_by", "remaining", "created_at", "provenance_id")})
    table = Table(title="resource types")
    for column in ("type", "status", "found", "rewritten", "conflicts"):
        table.add_column(column)
    for resource_type, task in sorted((job.get("types") or {}).items()):
        table.add_row(resource_type, task.get("status", ""), str(task.get("found", "")),
                      str(task.get("rewritten", "")), str(task.get("conflicts", "")))
    console.print(table)


@app.command()
def unmerge(ctx: typer.Context, job_id: str, as_json: bool = typer.Option(False, "--json")):
    """Undo a merge exactly from its journal; resources changed since are reported, not overwritten."""
    from shared.bootstrap import merge_deps
    from shared.services.unmerge import unmerge as unmerge_job

    report = _or_fail(lambda: unmerge_job(job_id, merge_deps(_settings(ctx))))
    summary = {"job_id": report.job_id, "restored": report.restored, "patients": report.patients,
               "conflicts": report.conflicts, "provenance_id": report.provenance_id}
    if as_json:
        console.print_json(json.dumps(summary, default=str))
    else:
        _print_mapping(f"unmerge {job_id}", summary)


@app.command()
def preview(ctx: typer.Context, master: str, duplicates: list[str],
            as_json: bool = typer.Option(False, "--json")):
    """What merging DUPLICATES into MASTER would rewrite, per resource type. Writes nothing."""
    from ops.explicit_merge import checked
    from shared.bootstrap import fhir_client, merge_deps
    from shared.services.explicit_merge import check_ids, read_patients
    from shared.services.merge_preview import preview as preview_merge

    settings = _settings(ctx)
    # Unknown or identical ids are errors, not "0 resources would change".
    duplicates = checked(lambda: check_ids(master, duplicates))
    checked(lambda: read_patients(fhir_client(settings), [master, *duplicates], must_be_active=False))
    counts = preview_merge(master, duplicates, merge_deps(settings))
    if as_json:
        console.print_json(json.dumps(counts))
    else:
        _print_mapping(f"preview: {sum(counts.values())} resource(s) would change", counts)


@app.command()
def reconcile(ctx: typer.Context, as_json: bool = typer.Option(False, "--json"),
              full: bool = typer.Option(False, "--full", help="Also read every resource of every type, for "
                                        "references no search parameter reaches (extensions); a batch job")):
    """Rewrite references that reached a duplicate after its merge finished (late data from a legacy
    system, bulk loads). Safe to run any time; schedule it after bulk loads."""
    from shared.bootstrap import merge_deps
    from shared.services.reconcile import reconcile as reconcile_late

    result = reconcile_late(merge_deps(_settings(ctx)), full=full)
    summary = {"merges_checked": result.merges, "duplicates_checked": result.duplicates,
               "rewritten": dict(result.rewritten), "failures": result.failures[:20]}
    if as_json:
        console.print_json(json.dumps(summary))
    else:
        _print_mapping("late references", summary)
    if result.failures:
        raise typer.Exit(1)


# --- report ----------------------------------------------------------------------------------------
@app.command()
def report(ctx: typer.Context, as_json: bool = typer.Option(False, "--json"),
           html: Path | None = typer.Option(None, "--html", dir_okay=False,
                                            help="Also write the dashboard (charts) as one standalone HTML file"),
           language: str = typer.Option("id", "--language", help="id (Bahasa Indonesia) or en, for --html")):
    """Patients seen, NIKs with duplicates, merges, references rewritten, review by reason, per source."""
    from shared.bootstrap import report_sources
    from shared.services.report import build_report

    if html is not None:
        from workbench.app import render_dashboard_file

        html.write_text(render_dashboard_file(_settings(ctx), report_sources(_settings(ctx)), language))
        err_console.print(f"dashboard written to {html}")
    data = build_report(report_sources(_settings(ctx)))
    if as_json:
        console.print_json(json.dumps(data))
        return
    print_report(data)


def print_report(data: dict) -> None:
    _print_mapping("deduplication report", {
        "patients seen": data["patients_seen"], "NIKs indexed": data["niks_indexed"],
        "NIKs with duplicates": data["niks_with_duplicates"], "merges done": data["merges"]["done"],
        "merges in progress": data["merges"]["in_progress"], "merges failed": data["merges"]["failed"],
        "merges undone": data["merges"]["unmerged"], "resources rewritten": data["resources_rewritten"]})
    if data["review_pending_by_reason"]:
        _print_mapping("review items pending, by reason", data["review_pending_by_reason"])
    if data["by_source"]:
        table = Table(title="per source system")
        for column in ("source", "patients", "merged away", "in review"):
            table.add_column(column, justify="right" if column != "source" else "left")
        for source, counts in data["by_source"].items():
            table.add_row(source, str(counts.get("patients", 0)), str(counts.get("merged_away", 0)),
                          str(counts.get("in_review", 0)))
        console.print(table)
    if data["resources_rewritten_by_type"]:
        _print_mapping("resources rewritten, by type", data["resources_rewritten_by_type"])


# --- more commands, each in its own module (registered here) -----------------------------------------
from ops import explicit_merge, history, load, model, stack  # noqa: E402

for _module in (stack, load, history, explicit_merge, model):
    _module.register(app)


def run(args: list[str] | None = None, prog_name: str = "dedup") -> int:
    """The `dedup` console script (and `python -m ops`): the app behind the one error handler."""
    from ops.errors import run_app

    return run_app(app, args, prog_name)


def entry_point() -> None:
    sys.exit(run())
