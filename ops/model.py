"""`dedup model train|list|promote`: the district's matching model (docs/operations.md "The matching model").

`train` reads the district's Patients (the FHIR server, or an NDJSON folder with --ndjson: the reading
code of `dedup backfill`), trains with Splink on DuckDB (tools/linkage/train.py), prints m and u of every
comparison level and how the candidate pairs' decision bands would move from the current model, and
stores a new version. It becomes current only on `--promote` or `dedup model promote VERSION`: promoting
changes which model decides from then on, never a decision already taken. Output names versions, counts
and weights only, never patient data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.context import settings_of
from ops.errors import NotFoundProblem, OpsError, Unreachable, UsageProblem

console = Console()
err_console = Console(stderr=True)
model_app = typer.Typer(help="The district's matching model: train a new version, list versions, promote one.",
                        no_args_is_help=True)
# Fewer records than this give EM too few pairs to estimate m (Splink fails or estimates nothing useful).
MIN_TRAINING_PATIENTS = 200


@contextmanager
def _store_errors(registry):
    """The store's failures in one line each (version names and the store's address only)."""
    from google.api_core import exceptions as gexc

    from shared.ports.model_store import CurrentModelMoved, ModelVersionExists, ModelVersionNotFound
    from shared.services.models import NoModelStore, UnusableModel

    try:
        yield
    except NoModelStore as error:
        raise UsageProblem(str(error), "set DEDUP_MODEL_STORE (a district: the model_bucket output of "
                           "Terraform as gs://<bucket>; the local stack sets it)") from None
    except ModelVersionNotFound as error:
        raise NotFoundProblem(str(error), "`dedup model list` shows the stored versions") from None
    except (ModelVersionExists, CurrentModelMoved, UnusableModel) as error:
        raise OpsError(str(error)) from None
    except ValueError as error:   # a version name that cannot be one (check_version_name)
        raise UsageProblem(str(error)) from None
    except gexc.GoogleAPICallError as error:
        raise Unreachable(f"model store {registry.describe()}: {type(error).__name__} (HTTP {error.code})",
                          "check the bucket name and that your account may read (list) or write it") from None


def _registry(ctx: typer.Context):
    from shared.bootstrap import model_registry

    return model_registry(settings_of(ctx))


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console,
                    disable=not err_console.is_terminal and os.environ.get("CI") == "true")


def read_records(source, settings, progress: Progress) -> list[tuple[str, dict]]:
    """Every Patient as the index record matching builds from it (``member_record``): what the model
    compares, with keyed tokens instead of NIKs and phones."""
    from shared.domain.patient import member_record, patient_facts

    task = progress.add_task("reading patients", total=source.total())
    records = []
    for page in source.pages():
        records.extend((p["id"], member_record(patient_facts(p, settings))) for p in page if p.get("id"))
        progress.advance(task, len(page))
    progress.update(task, total=len(records), completed=len(records))
    return records


@model_app.command("train")
def train(
    ctx: typer.Context,
    by: str = typer.Option(..., "--by", help="Who trains (kept with the version), e.g. your e-mail or the job's name"),
    ndjson: Path | None = typer.Option(
        None, exists=True, file_okay=False,
        help="Read Patients from this folder of NDJSON (as `dedup backfill --ndjson`) instead of the FHIR server"),
    promote: bool = typer.Option(False, "--promote", help="Make the new version current at once (default: a "
                                 "person reads the comparison, then runs `dedup model promote VERSION`)"),
    seed: int = typer.Option(1, help="Seed of the random pairs u is estimated on"),
    page_size: int = typer.Option(1000, min=1, max=1000, help="Patients per FHIR page"),
    read_workers: int = typer.Option(4, min=1, max=32, help="FHIR pages fetched at once (offset-paging servers)"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
):
    """Train a new model version on the district's Patients, compare it with the current model, store it."""
    from ops.preflight import check_fhir_url
    from shared.bootstrap import patient_source
    from shared.logging import get_logger
    from shared.services.models import artefact_summary
    from tools.linkage.compare import compare_bands
    from tools.linkage.train import train as train_model

    # Splink warns about every level a small district never shows (its m stays at the default); the table
    # printed below shows every level's m and u.
    logging.getLogger("splink").setLevel(logging.ERROR)
    settings = settings_of(ctx)
    registry = _registry(ctx)
    with _store_errors(registry):
        registry.required_store()   # no store: said before the reading, not after
    if ndjson is None:
        check_fhir_url(settings)
    seconds = {}
    with _progress() as progress:
        started = time.perf_counter()
        source = patient_source(settings, ndjson=ndjson, page_size=page_size, read_workers=read_workers)
        records = read_records(source, settings, progress)
        seconds["read"] = time.perf_counter() - started
        if len(records) < MIN_TRAINING_PATIENTS:
            raise UsageProblem(f"{len(records)} patients read from {source.describe()}: too few to train "
                               f"(at least {MIN_TRAINING_PATIENTS})")
        step = progress.add_task("training", total=6)

        def on_step(name: str) -> None:
            progress.update(step, description=f"training: {name}")
            progress.advance(step)

        trained = train_model(records, "new", seed=seed, note=f"dedup model train by {by}", on_step=on_step)
        progress.update(step, description="training", completed=6)
        seconds["train"] = trained.seconds
        compare = progress.add_task("comparing with the current model", total=None)
        with _store_errors(registry):
            current = registry.current_model()
        comparison = compare_bands(current, trained.artefact, records, merge_weight=settings.model_merge_weight,
                                   review_weight=settings.model_review_weight)
        progress.update(compare, total=1, completed=1)
        seconds["compare"] = comparison.seconds
    artefact = trained.artefact | {"trained_on": trained.artefact["trained_on"] | {
        "source": source.describe(), "compared_with": comparison.as_dict()}}
    with _store_errors(registry):
        info = registry.add(artefact, created_by=by)
        pointer = registry.promote(info.version, promoted_by=by) if promote else None
        current_version = registry.current_version()
    get_logger(__name__).info("model_trained", model_version=info.version, patients=len(records),
                              pairs=comparison.pairs, pairs_changing_band=comparison.changed,
                              promoted=pointer is not None, seconds={k: round(v, 1) for k, v in seconds.items()})
    summary = {"version": info.version, "store": registry.describe(), "patients": len(records),
               "source": source.describe(), "promoted": pointer is not None, "current": current_version,
               "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "parameters": artefact_summary(artefact), "comparison": comparison.as_dict()}
    if as_json:
        console.print_json(json.dumps(summary))
        return
    _print_parameters(artefact, info.version)
    _print_comparison(comparison)
    console.print(f"{len(records):,} patients read in {seconds['read']:.1f} s, trained in {seconds['train']:.1f} s, "
                  f"compared in {seconds['compare']:.1f} s")
    console.print(f"stored model version [bold]{info.version}[/bold] in {registry.describe()}", highlight=False)
    if pointer is not None:
        console.print(f"promoted: {info.version} is the current model (was {pointer.previous or 'the default'})")
    else:
        console.print(f"not promoted; the current model stays {current_version or current.version}. After "
                      f"checking the comparison: dedup model promote {info.version} --by <you>", highlight=False)


def _print_parameters(artefact: dict, version: str) -> None:
    from shared.services.models import artefact_summary

    table = Table(title=f"model {version}: m and u per comparison level (weight = log2 m/u)")
    for column in ("comparison", "level", "m", "u", "weight"):
        table.add_column(column, justify="left" if column in ("comparison", "level") else "right")
    for row in artefact_summary(artefact):
        table.add_row(row["comparison"], row["level"], _number(row["m"]), _number(row["u"]),
                      "" if row["m"] is None else f"{row['match_weight']:+.2f}")
    console.print(table)


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


def _print_comparison(comparison) -> None:
    from tools.linkage.compare import BANDS

    table = Table(title=f"{comparison.pairs:,} candidate pairs: band under the current model "
                        f"{comparison.current_version} (rows) and the new one (columns); "
                        f"{comparison.changed:,} change")
    table.add_column("current \\ new")
    for band in BANDS:
        table.add_column(band, justify="right")
    for before in BANDS:
        table.add_row(before, *(f"{comparison.counts.get((before, after), 0):,}" for after in BANDS))
    console.print(table)


@model_app.command("list")
def list_versions(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")):
    """Every stored version, oldest first: current marked, created when and by whom, trained on how many records."""
    registry = _registry(ctx)
    with _store_errors(registry):
        listing = registry.listing()
    rows = [{"version": info.version, "current": current, "created_at": info.created_at,
             "created_by": info.created_by, "patients": info.patients, "source": info.source,
             "size_bytes": info.size_bytes,
             "pairs_changing_band": (info.compared or {}).get("changed"),
             "compared_with": (info.compared or {}).get("model_version")} for info, current in listing]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"model versions in {registry.describe()}"
                        + ("" if any(r["current"] for r in rows) else " (none current: the shipped default decides)"))
    table.add_column("")
    table.add_column("version", no_wrap=True)
    for column in ("created", "by", "patients", "pairs changing band"):
        table.add_column(column, justify="right" if column in ("patients", "pairs changing band") else "left")
    for row in rows:
        table.add_row("*" if row["current"] else "", row["version"], row["created_at"] or "", row["created_by"] or "",
                      _count(row["patients"]), _count(row["pairs_changing_band"]))
    console.print(table)
    console.print("* current. Each version's comparison was against the model current when it was trained "
                  "(--json: which one).", highlight=False)


def _count(value) -> str:
    return "" if value is None else f"{value:,}"


@model_app.command("promote")
def promote(ctx: typer.Context, version: str,
            by: str = typer.Option(..., "--by", help="Who promotes (kept with the pointer)"),
            as_json: bool = typer.Option(False, "--json")):
    """Make VERSION the current model: decisions from now on use it (running functions within
    DEDUP_MODEL_REFRESH_SECONDS); no decision already taken changes."""
    registry = _registry(ctx)
    with _store_errors(registry):
        pointer = registry.promote(version, promoted_by=by)
    result = {"current": pointer.version, "previous": pointer.previous, "promoted_by": pointer.promoted_by,
              "promoted_at": pointer.promoted_at}
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(f"current model: {pointer.version} (was {pointer.previous or 'the shipped default'}); running "
                  f"functions load it within {settings_of(ctx).model_refresh_seconds} s", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
