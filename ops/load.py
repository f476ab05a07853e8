"""`dedup load PATH`: your own FHIR data into the FHIR server, then `dedup backfill` and `dedup review`.

PATH may be
- a folder of NDJSON files: flat (``Patient.ndjson``), split (``Patient-1.ndjson``, ``Patient.000.ndjson``),
  nested (a folder per load), or a Healthcare API ``fhirStores.export`` folder (one file per type, named
  by the type, no extension);
- a FHIR Bulk Data export: a folder with its ``manifest.json`` (``output: [{type, url}]``; each file is
  found by the last part of its url in the folder);
- a Bundle (``.json``: batch, transaction, collection or searchset), or one resource, or one NDJSON file.
Each file is recognised by its content (the first line must be a FHIR resource), not only its name.
What cannot be read is refused before anything is written, with a one-line message.

Resources are written with batch bundles of PUTs (their own ids; a resource without an id is POSTed),
referenced types before referencing ones (``tools.dataset.load.LOAD_ORDER``), so a server enforcing
referential integrity accepts them. Failed entries are listed by type, id and status only.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import typer
from rich.console import Console

from ops.errors import NotFoundProblem, OpsError, UsageProblem

console = Console()
err_console = Console(stderr=True)
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
_NDJSON_SUFFIXES = (".ndjson", ".jsonl")


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str           # "ndjson" | "bundle" | "resource"
    resource_type: str  # the file's type (its first resource's; "Bundle" entries are typed one by one)


@dataclass
class LoadSummary:
    loaded: Counter = field(default_factory=Counter)
    failed: list[dict] = field(default_factory=list)
    files: int = 0
    seconds: float = 0.0


def _first_json_line(path: Path) -> dict | None:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def _whole_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _classify(path: Path) -> Source | None:
    """What one file holds, by its content; None when it is no FHIR data."""
    try:
        if path.suffix == ".json":
            document = _whole_json(path)
            if document is None or "resourceType" not in document:
                return None
            kind = "bundle" if document["resourceType"] == "Bundle" else "resource"
            return Source(path, kind, document["resourceType"])
        first = _first_json_line(path)
    except (OSError, UnicodeDecodeError):
        return None
    if first is None or not isinstance(first.get("resourceType"), str):
        return None
    return Source(path, "ndjson", first["resourceType"])


def _candidate(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or name == "manifest.json":
        return False
    if path.suffix in (*_NDJSON_SUFFIXES, ".json"):
        return True
    # fhirStores.export writes one file per type named by the type; split exports add a suffix.
    return not path.suffix and bool(_TYPE_NAME.match(name.split("-")[0]))


def discover(path: Path) -> list[Source]:
    """The files to load under ``path``; raises ``NotFoundProblem`` / ``UsageProblem``."""
    if not path.exists():
        raise NotFoundProblem(f"{path} does not exist")
    if path.is_file():
        source = _classify(path)
        if source is None:
            raise UsageProblem(f"{path} is not FHIR JSON or NDJSON (no resourceType on its first line)",
                               "give a Bundle, a resource, an NDJSON file or a folder of them")
        return [source]
    manifest = path / "manifest.json"
    if manifest.is_file() and "output" in (_whole_json(manifest) or {}):
        return _from_manifest(path, manifest)
    sources = []
    for candidate in sorted(p for p in path.rglob("*") if p.is_file() and _candidate(p)):
        source = _classify(candidate)
        if source is None and candidate.suffix in _NDJSON_SUFFIXES:
            raise UsageProblem(f"{candidate} is not NDJSON of FHIR resources (its first line has no resourceType)")
        if source is not None:
            sources.append(source)
    if not sources:
        raise UsageProblem(f"no FHIR data found in {path}",
                           "expected *.ndjson files, a Bulk Data export with manifest.json, "
                           "a fhirStores.export folder, or Bundle JSON")
    return sources


def _from_manifest(folder: Path, manifest: Path) -> list[Source]:
    document = _whole_json(manifest)
    if document is None or not isinstance(document.get("output"), list):
        raise UsageProblem(f"{manifest} is not a Bulk Data manifest (no 'output' list)")
    sources = []
    for output in document["output"]:
        name = Path(urlparse(str(output.get("url", ""))).path).name
        file = folder / name
        if not name or not file.is_file():
            raise UsageProblem(f"{manifest} lists {output.get('url')!r}, which is not in {folder}",
                               "download every output file of the export next to its manifest.json")
        source = _classify(file)
        if source is None:
            raise UsageProblem(f"{file} is not NDJSON of FHIR resources")
        sources.append(Source(file, "ndjson", str(output.get("type") or source.resource_type)))
    if not sources:
        raise UsageProblem(f"{manifest} lists no output files")
    return sources


def resources_of(source: Source) -> Iterator[dict | str]:
    """The resources of one file, in order; a line that is not a resource comes back as an error code."""
    if source.kind == "resource":
        yield _whole_json(source.path)
        return
    if source.kind == "bundle":
        for entry in (_whole_json(source.path) or {}).get("entry") or []:
            resource = entry.get("resource")
            yield resource if isinstance(resource, dict) and resource.get("resourceType") else "entry-without-resource"
        return
    with open(source.path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                resource = json.loads(line)
            except ValueError:
                yield "not-json"
                continue
            yield resource if isinstance(resource, dict) and resource.get("resourceType") else "not-a-resource"


def _entry(resource: dict) -> dict:
    if resource.get("id"):
        url = f"{resource['resourceType']}/{resource['id']}"
        return {"resource": resource, "request": {"method": "PUT", "url": url}}
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def load_sources(sources: list[Source], fhir, *, batch_size: int = 100, workers: int = 4) -> LoadSummary:
    """Writes every resource of ``sources``, referenced types first."""
    from tools.dataset.load import chunks, ordered_types

    summary = LoadSummary(files=len(sources))
    started = time.perf_counter()
    by_type: dict[str, list[Source]] = {}
    for source in sources:
        by_type.setdefault(source.resource_type, []).append(source)

    def send(batch: list[dict]):
        try:
            return batch, fhir.batch([_entry(r) for r in batch])
        except Exception as error:  # the whole bundle failed: each entry is reported with its status
            return batch, error

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for resource_type in ordered_types(by_type):
            resources = []
            for source in by_type[resource_type]:
                for item in resources_of(source):
                    if isinstance(item, str):
                        summary.failed.append({"file": str(source.path), "resource": None, "status": item})
                    else:
                        resources.append(item)
            for batch, outcomes in pool.map(send, chunks(iter(resources), batch_size)):
                if isinstance(outcomes, Exception):
                    status = getattr(outcomes, "status", None) or type(outcomes).__name__
                    summary.failed += [{"resource": f"{r['resourceType']}/{r.get('id', '')}", "status": status}
                                       for r in batch]
                    continue
                for resource, outcome in zip(batch, outcomes):
                    if outcome.ok:
                        summary.loaded[resource["resourceType"]] += 1
                    else:
                        summary.failed.append({"resource": f"{resource['resourceType']}/{resource.get('id', '')}",
                                               "status": outcome.status})
    summary.seconds = time.perf_counter() - started
    return summary


def load(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A folder of NDJSON (flat, split, Bulk Data export with manifest.json, "
                                "fhirStores.export), a Bundle JSON, or one file"),
    batch_size: int = typer.Option(100, min=1, max=1000, help="Resources per batch bundle"),
    workers: int = typer.Option(4, min=1, max=32, help="Bundles in flight"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Load your FHIR data into the FHIR server; then `dedup backfill` and `dedup review list`."""
    from ops.context import settings_of as _settings
    from shared.bootstrap import fhir_client

    sources = discover(path)  # refuses before anything is written
    settings = _settings(ctx)
    with err_console.status(f"loading {len(sources)} file(s) into {settings.fhir_base_url}"):
        summary = load_sources(sources, fhir_client(settings), batch_size=batch_size, workers=workers)
    result = {"files": summary.files, "loaded": dict(summary.loaded), "loaded_total": sum(summary.loaded.values()),
              "failed": len(summary.failed), "failures": summary.failed[:50], "seconds": round(summary.seconds, 1)}
    if as_json:
        console.print_json(json.dumps(result))
    else:
        from ops.context import print_mapping as _print_mapping

        _print_mapping(f"loaded {result['loaded_total']:,} resource(s) from {summary.files} file(s) "
                       f"in {result['seconds']} s", result["loaded"] or {"nothing": 0})
        for failure in summary.failed[:20]:
            err_console.print(f"failed: {failure.get('resource') or failure.get('file')} ({failure['status']})")
        console.print("next: `dedup backfill` (index and merge what is there), then `dedup review list`")
    if summary.failed:
        raise OpsError(f"{len(summary.failed)} resource(s) were not loaded", "see the failures listed above")
    if not summary.loaded:
        raise UsageProblem(f"{path} held no resources")


def register(app: typer.Typer) -> None:
    app.command()(load)
