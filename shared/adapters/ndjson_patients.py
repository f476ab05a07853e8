"""Patients from an NDJSON export on disk, read without the FHIR server (``shared.ports.patient_source``).

Accepted layouts, in this order:
- FHIR Bulk Data ``$export`` output: ``manifest.json`` whose ``output`` lists ``{"type": "Patient", "url"}``;
  each url's file name is looked up in the folder (the files downloaded beside the manifest);
- Healthcare API ``fhirStores.export`` output copied from its bucket: files named ``Patient`` or
  ``Patient-*`` (no extension), or ``*.ndjson``;
- a folder (searched recursively) of ``Patient*.ndjson`` files (``.gz`` too).
Lines that are not a Patient are skipped (an export of every type may share a file).

A Patient's place in the files is ``(file number, byte offset of its line)``: the batch backfill reads
byte ranges of the files in parallel (``patients_in``) and then each Patient again by its place
(``patient_at``), part by part. Compressed files cannot be read at an offset: a folder holding some is
not ``rereadable`` (the backfill copies its Patients to its own spool once). Neither is a folder read
with ``copy_first``: a bucket mounted with Cloud Storage FUSE reads fast in sequence but pays a
request for every place read at random.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO
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


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _patient(line: bytes | str) -> dict | None:
    if not line.strip():
        return None
    resource = json.loads(line)
    return resource if resource.get("resourceType") == "Patient" else None


class NdjsonPatients(PatientSource):
    def __init__(self, folder: Path, page_size: int = 1000, *, copy_first: bool = False):
        self.folder = Path(folder)
        self.files = patient_files(self.folder)
        if not self.files:
            raise FileNotFoundError(f"no Patient NDJSON in {self.folder}")
        self._page_size = page_size
        self.rereadable = not copy_first and not any(path.suffix == ".gz" for path in self.files)
        self.repeatable = True

    def describe(self) -> str:
        return f"ndjson:{self.folder} ({len(self.files)} file(s), {sum(f.stat().st_size for f in self.files)} bytes)"

    def total(self) -> int | None:
        return None  # counting lines costs a full read

    def pages(self) -> Iterator[list[dict]]:
        page: list[dict] = []
        for path in self.files:
            with _open(path) as lines:
                for line in lines:
                    resource = _patient(line)
                    if resource is None:
                        continue
                    page.append(resource)
                    if len(page) >= self._page_size:
                        yield page
                        page = []
        if page:
            yield page

    # --- by place (uncompressed files) -----------------------------------------------------------
    def ranges(self, size: int) -> list[tuple[int, int, int]]:
        """``(file number, start, end)`` byte ranges of about ``size`` bytes covering every file."""
        ranges = []
        for number, path in enumerate(self.files):
            length = path.stat().st_size
            ranges += [(number, start, min(start + size, length)) for start in range(0, length, size)]
        return ranges

    def patients_in(self, number: int, start: int, end: int) -> Iterator[tuple[int, dict]]:
        """``(offset, Patient)`` of every line that starts in ``[start, end)`` of file ``number``."""
        with self.files[number].open("rb") as lines:
            offset = start
            if start:
                lines.seek(start - 1)
                offset = start - 1 + len(lines.readline())   # the line under way belongs to the range before
            while offset < end:
                line = lines.readline()
                if not line:
                    break
                resource = _patient(line)
                if resource is not None:
                    yield offset, resource
                offset += len(line)

    def patients_at(self, places: Iterable[tuple[int, int]]) -> Iterator[dict]:
        """The Patients whose lines start at these ``(file number, offset)`` places, in that order."""
        opened: dict[int, BinaryIO] = {}
        try:
            for number, offset in places:
                if number not in opened:
                    opened[number] = self.files[number].open("rb")
                opened[number].seek(offset)
                resource = _patient(opened[number].readline())
                if resource is None:
                    raise ValueError(f"no Patient at offset {offset} of file {number}")
                yield resource
        finally:
            for lines in opened.values():
                lines.close()
