"""Loads a generated district dataset into a FHIR server with batch bundles of PUTs (the generated ids).

Order: per phase (bulk, then stream), referenced resources before the resources that reference them —
shared Organizations/Practitioners/Locations, then Patients, then clinical types in ``LOAD_ORDER`` — and
each type completes before the next starts. The local server does not enforce referential integrity
(checked: an Observation pointing at a missing Patient is accepted), but the Healthcare API and HAPI do
by default, so the order is kept. Bundles of one type are sent several at a time from a thread pool.

Failed entries are collected with type, id, status and OperationOutcome issue codes only (never
diagnostics text, which some servers fill with resource content) and returned in the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shared.fhir.client import FhirClient
from shared.fhir.errors import EntryOutcome, FhirError
from tools.dataset.generate import PHASES, iter_resources

# Referenced before referencing: EpisodeOfCare <- Encounter <- (everything with .encounter);
# ServiceRequest <- Specimen <- Observation <- DiagnosticReport; MedicationRequest <- MedicationAdministration;
# Coverage <- Claim.
LOAD_ORDER = (
    "Organization", "Practitioner", "Location", "Patient",
    "Coverage", "EpisodeOfCare", "Encounter", "ServiceRequest", "Specimen", "Observation",
    "DiagnosticReport", "MedicationRequest", "MedicationAdministration", "Condition", "Procedure",
    "Immunization", "AllergyIntolerance", "CarePlan", "Flag", "DocumentReference", "ImagingStudy",
    "Appointment", "Claim",
)


@dataclass(frozen=True)
class FailedEntry:
    phase: str
    resource_type: str
    id: str
    status: int
    issue_codes: tuple[str, ...]


@dataclass
class LoadReport:
    phases: tuple[str, ...]
    loaded: dict[str, int] = field(default_factory=dict)     # resource type -> entries that succeeded
    failed: list[FailedEntry] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_loaded(self) -> int:
        return sum(self.loaded.values())

    @property
    def resources_per_second(self) -> float:
        return self.total_loaded / self.seconds if self.seconds > 0 else 0.0


def dataset_counts(directory: str | Path) -> dict[str, dict[str, int]]:
    """Resources per phase and type, from the manifest (or by counting lines if it is missing)."""
    manifest = Path(directory) / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())["counts"]
    counts: dict[str, dict[str, int]] = {}
    for phase in PHASES:
        counts[phase] = {}
        for path in sorted((Path(directory) / phase).glob("*.ndjson")):
            with open(path, encoding="utf-8") as handle:
                counts[phase][path.stem] = sum(1 for line in handle if line.strip())
    return counts


def ordered_types(present: Iterable[str]) -> list[str]:
    """Types in load order; any type the order does not know goes last (alphabetically)."""
    present = set(present)
    known = [t for t in LOAD_ORDER if t in present]
    return known + sorted(present - set(LOAD_ORDER))


def put_entry(resource: dict) -> dict:
    return {"resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def chunks(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _issue_codes(outcome: dict | None) -> tuple[str, ...]:
    if not outcome:
        return ()
    return tuple(str(issue.get("code", "")) for issue in outcome.get("issue") or [])


def _send(client: FhirClient, batch: list[dict]) -> list[EntryOutcome] | FhirError:
    try:
        return client.batch([put_entry(resource) for resource in batch])
    except FhirError as error:     # the whole bundle failed (after the client's retries)
        return error


def load_dataset(directory: str | Path, client: FhirClient, *, only: str | None = None, batch_size: int = 100,
                 workers: int = 4, show_progress: bool = True) -> LoadReport:
    """Loads the phases of ``directory`` (both, or ``only`` one) into the server behind ``client``."""
    if only is not None and only not in PHASES:
        raise ValueError(f"only must be one of {PHASES}")
    phases = tuple(p for p in PHASES if only in (None, p))
    counts = dataset_counts(directory)
    report = LoadReport(phases=phases)
    total = sum(n for phase in phases for n in counts.get(phase, {}).values())
    progress = Progress(TextColumn("[bold]{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]:>8} res/s"), TimeRemainingColumn(),
                        disable=not show_progress, transient=False)
    started = time.perf_counter()
    with progress, ThreadPoolExecutor(max_workers=workers) as pool:
        overall = progress.add_task("loading", total=total, rate="")
        for phase in phases:
            for resource_type in ordered_types(counts.get(phase, {})):
                progress.update(overall, description=f"{phase}: {resource_type}")
                in_flight: dict[Future, list[dict]] = {}

                def settle(done: Iterable[Future], in_flight=in_flight, phase=phase,
                           resource_type=resource_type) -> None:
                    for future in done:
                        batch = in_flight.pop(future)
                        result = future.result()
                        if isinstance(result, FhirError):
                            outcomes = [EntryOutcome(status=result.status or 0, resource=None, etag=None,
                                                     location=None, outcome=result.outcome)] * len(batch)
                        else:
                            outcomes = result
                        for resource, outcome in zip(batch, outcomes):
                            if outcome.ok:
                                report.loaded[resource_type] = report.loaded.get(resource_type, 0) + 1
                            else:
                                report.failed.append(FailedEntry(phase, resource_type, resource["id"],
                                                                 outcome.status, _issue_codes(outcome.outcome)))
                        progress.advance(overall, len(batch))
                        elapsed = time.perf_counter() - started
                        progress.update(overall, rate=f"{report.total_loaded / elapsed:,.0f}" if elapsed else "")

                for batch in chunks(iter_resources(directory, phase, resource_type), batch_size):
                    if len(in_flight) >= 2 * workers:     # bounded: never read the whole file ahead
                        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        settle(done)
                    in_flight[pool.submit(_send, client, batch)] = batch
                done, _ = wait(in_flight)
                settle(done)
    report.seconds = time.perf_counter() - started
    return report


def report_table(report: LoadReport):
    """A rich table of what was loaded and what failed (ids and statuses only)."""
    from rich.table import Table

    table = Table(title=f"Loaded phases: {', '.join(report.phases)}")
    table.add_column("resource type")
    table.add_column("loaded", justify="right")
    table.add_column("failed", justify="right")
    failed_by_type: dict[str, int] = {}
    for failure in report.failed:
        failed_by_type[failure.resource_type] = failed_by_type.get(failure.resource_type, 0) + 1
    for resource_type in ordered_types(set(report.loaded) | set(failed_by_type)):
        table.add_row(resource_type, f"{report.loaded.get(resource_type, 0):,}",
                      str(failed_by_type.get(resource_type, 0)))
    table.add_row("[bold]total", f"[bold]{report.total_loaded:,}", f"[bold]{len(report.failed)}")
    table.caption = (f"{report.total_loaded:,} resources in {report.seconds:.1f} s = "
                     f"{report.resources_per_second:,.0f} resources/s")
    return table


def failures_table(report: LoadReport, limit: int = 50):
    from rich.table import Table

    table = Table(title=f"Failed entries ({len(report.failed)}; first {min(limit, len(report.failed))})")
    for column in ("phase", "resource", "status", "issue codes"):
        table.add_column(column)
    for failure in report.failed[:limit]:
        table.add_row(failure.phase, f"{failure.resource_type}/{failure.id}", str(failure.status),
                      ", ".join(failure.issue_codes))
    return table
