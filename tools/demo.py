"""The main job, first version: start the local stack, generate a district dataset, load it, show what
is in the FHIR store and which duplicates the ground truth knows about, then tear everything down.

    python -m tools.demo [--patients 1000] [--seed 1] [--resources-per-patient 20] [--keep DIR]
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from shared.config import Settings
from shared.fhir.client import FhirClient, run_concurrently
from tools.dataset.generate import CASE_LABELS, GroundTruth, Params, generate
from tools.dataset.load import LoadReport, dataset_counts, failures_table, load_dataset, ordered_types, report_table
from tools.stack import LocalStack

console = Console()
app = typer.Typer(add_completion=False)


def store_counts(client: FhirClient, resource_types: list[str]) -> dict[str, int]:
    """Resources per type as the server reports them (``_summary=count``), several types at once."""
    def count(resource_type: str) -> int:
        return next(client.search_bundles(resource_type, {"_summary": "count"}))["total"]

    return dict(zip(resource_types, run_concurrently(count, resource_types, max_workers=8)))


def patients_per_source(client: FhirClient) -> Counter:
    """Tallies ``meta.source`` of every Patient read back from the store."""
    return Counter(p.get("meta", {}).get("source", "(none)") for p in client.search("Patient", {}))


def store_table(counts: dict[str, int], expected: dict[str, int]) -> Table:
    table = Table(title="What is in the FHIR store")
    table.add_column("resource type")
    table.add_column("in store", justify="right")
    table.add_column("generated", justify="right")
    for resource_type in ordered_types(counts):
        same = counts[resource_type] == expected.get(resource_type, 0)
        table.add_row(resource_type, f"{counts[resource_type]:,}",
                      f"{expected.get(resource_type, 0):,}" + ("" if same else " [red](differs)"))
    table.add_row("[bold]total", f"[bold]{sum(counts.values()):,}", f"[bold]{sum(expected.values()):,}")
    return table


def source_table(per_source: Counter, truth: GroundTruth) -> Table:
    table = Table(title="Patients per legacy source system")
    table.add_column("meta.source")
    table.add_column("patients", justify="right")
    table.add_column("of which loaded later (stream)", justify="right")
    streamed = Counter(f"urn:source:{info.source}" for info in truth.patients.values() if info.load == "stream")
    for source, count in sorted(per_source.items()):
        table.add_row(source, f"{count:,}", f"{streamed.get(source, 0):,}")
    return table


def duplicates_table(truth: GroundTruth) -> Table:
    persons_by_case: dict[str, set[str]] = {}
    for info in truth.patients.values():
        persons_by_case.setdefault(info.case, set()).add(info.person)
    table = Table(title="Known duplicates and hard cases (ground truth)", show_lines=False)
    table.add_column("case")
    table.add_column("patients", justify="right")
    table.add_column("persons", justify="right")
    table.add_column("what it means", overflow="fold")
    for case, count in truth.cases().items():
        table.add_row(case, f"{count:,}", f"{len(persons_by_case[case]):,}", CASE_LABELS[case])
    multi = sum(1 for ids in truth.persons.values() if len(ids) > 1)
    table.caption = (f"{len(truth.patients):,} patient records belong to {len(truth.persons):,} people; "
                     f"{multi:,} people have more than one record")
    return table


def run_demo(patients: int, seed: int, resources_per_patient: float, keep: Path | None) -> LoadReport:
    with LocalStack() as stack:
        console.rule("[bold]1. Local stack")
        console.print(stack.describe())
        settings = Settings(fhir_base_url=stack.fhir.base_url)
        with tempfile.TemporaryDirectory(prefix="district-") as tmp:
            directory = keep or Path(tmp)
            console.rule("[bold]2. District dataset")
            began = time.perf_counter()
            truth = generate(directory, Params(patients=patients, seed=seed,
                                               resources_per_patient=resources_per_patient), settings)
            console.print(f"{patients:,} patient records from {len(truth.persons):,} people generated into "
                          f"{directory} in {time.perf_counter() - began:.1f} s")
            console.rule("[bold]3. Loading into the FHIR server (bulk phase, then stream phase)")
            with FhirClient.from_settings(settings) as client:
                report = load_dataset(directory, client, batch_size=settings.merge_batch_size, workers=4)
                console.print(report_table(report))
                if report.failed:
                    console.print(failures_table(report))
                console.rule("[bold]4. The store")
                expected: Counter = Counter()
                for types in dataset_counts(directory).values():
                    expected.update(types)
                console.print(store_table(store_counts(client, sorted(expected)), dict(expected)))
                console.print(source_table(patients_per_source(client), truth))
            console.print(duplicates_table(truth))
            console.rule("[bold]5. Throughput")
            console.print(f"loaded {report.total_loaded:,} resources in {report.seconds:.1f} s = "
                          f"[bold]{report.resources_per_second:,.0f} resources/s[/bold] "
                          f"(batches of {settings.merge_batch_size}, 4 in flight)")
        console.rule("[bold]6. Tearing down the local stack")
    return report


@app.command()
def main(patients: int = typer.Option(1000, "--patients", min=1),
         seed: int = typer.Option(1, "--seed"),
         resources_per_patient: float = typer.Option(20.0, "--resources-per-patient", min=0.0),
         keep: Optional[Path] = typer.Option(None, "--keep", help="write the dataset here and keep it")):
    """Start the stack, generate and load a district dataset, show the store, tear down."""
    report = run_demo(patients, seed, resources_per_patient, keep)
    console.print("done.")
    if report.failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
