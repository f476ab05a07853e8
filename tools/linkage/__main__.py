"""``python -m tools.linkage train|evaluate``: the matching model on a generated district (dev tooling).

    python -m tools.linkage train --dataset DIR --out shared/linkage/default_model.json --version default-1
    python -m tools.linkage evaluate --dataset DIR --model FILE

A district's own model is trained from its FHIR store with ``dedup model train`` (ops/model.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from shared.config import get_settings
from shared.domain.patient import member_record, patient_facts
from tools.linkage.train import train

app = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console()


@app.callback()
def main() -> None:
    """The matching model (Splink, DuckDB): training and evaluation on generated districts."""


def dataset_records(directory: Path) -> list[tuple[str, dict]]:
    settings = get_settings()
    records = []
    for phase in ("bulk", "stream"):
        path = directory / phase / "Patient.ndjson"
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    resource = json.loads(line)
                    records.append((resource["id"], member_record(patient_facts(resource, settings))))
    return records


@app.command("train")
def train_command(dataset: Path = typer.Option(..., "--dataset", exists=True, file_okay=False),
                  out: Path = typer.Option(..., "--out"), version: str = typer.Option(..., "--version"),
                  seed: int = typer.Option(1, "--seed")):
    """Train on a generated district's Patients and write the artefact."""
    started = time.perf_counter()
    records = dataset_records(dataset)
    read = time.perf_counter() - started
    trained = train(records, version, seed=seed, note=f"generated district {dataset.name}")
    out.write_text(json.dumps(trained.artefact, indent=1, sort_keys=True) + "\n")
    console.print(f"{len(records):,} records read in {read:.1f} s; trained in {trained.seconds:.1f} s "
                  f"({trained.artefact['trained_on']['seconds']}); {out} {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    app()
