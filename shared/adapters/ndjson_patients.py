"""Patients from an NDJSON export on disk, read without the FHIR server (``shared.ports.patient_source``).

Accepted layouts, in this order:
- FHIR Bulk Data ``$export`` output: ``manifest.json`` whose ``output`` lists ``{"type": "Patient", "url"}``;
  each url's file name is looked up in the folder (the files downloaded beside the manifest);
- Healthcare API ``fhirStores.export`` output copied from its bucket: files named ``Patient`` or
  ``Patient-*`` (no extension), or ``*.ndjson``;
- a folder (searched recursively) of ``Patient*.ndjson`` files (``.gz`` too).
Lines that are not a Patient are skipped (an export of every type may share a file).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from shared.ports.patient_source import PatientSource


def patient_files(folder: Path) -> list[Path]:
    manifest = folder / "manifest.json"
    if manifest.is_file():
        outputs = (json.loads(manifest.read_text()) or {}).get("output")
        if isinstance(outputs, list):
            files = []
            for output in outputs:
                if isinstance(output, dict) and output.get("type") == "Patient" and output.get("url"):
                    local = folder / Path(urlsplit(str(output["url"])).path).name
                    if not local.is_file():
                        raise FileNotFoundError(f"{manifest} lists {local.name}, which is not in the folder")
                    files.append(local)
            return files
    names = ("Patient", "Patient-*", "Patient*.ndjson", "Patient*.ndjson.gz")
    found = {path for pattern in names for path in folder.rglob(pattern) if path.is_file()}
    return sorted(found)


class NdjsonPatients(PatientSource):
    rereadable = True

    def __init__(self, folder: Path, page_size: int = 1000):
        self.folder = Path(folder)
        self.files = patient_files(self.folder)
        if not self.files:
            raise FileNotFoundError(f"no Patient NDJSON in {self.folder}")
        self._page_size = page_size

    def describe(self) -> str:
        return f"ndjson:{self.folder} ({len(self.files)} file(s), {sum(f.stat().st_size for f in self.files)} bytes)"

    def total(self) -> int | None:
        return None  # counting lines costs a full read

    def pages(self) -> Iterator[list[dict]]:
        page: list[dict] = []
        for path in self.files:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as lines:
                for line in lines:
                    if not line.strip():
                        continue
                    resource = json.loads(line)
                    if resource.get("resourceType") != "Patient":
                        continue
                    page.append(resource)
                    if len(page) >= self._page_size:
                        yield page
                        page = []
        if page:
            yield page
