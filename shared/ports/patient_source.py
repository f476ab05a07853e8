"""Port: where a batch backfill reads every Patient from (the FHIR server, or an NDJSON export)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator


class PatientSource(ABC):
    # Whether reading it again is cheap and gives the same records (files): a resumed run reads it
    # again instead of keeping its own copy.
    rereadable: bool = False
    # Whether reading it again, even at a cost (a copy, a decompression), gives the same records: files
    # do, a live server does not. A decide phase that began writing may re-spool only such a source.
    repeatable: bool = False

    @abstractmethod
    def describe(self) -> str:
        """What is read, for the run's checkpoint and summary (no patient data)."""

    @abstractmethod
    def total(self) -> int | None:
        """How many Patients there are, when cheap to know (progress bars), else None."""

    @abstractmethod
    def pages(self) -> Iterator[list[dict]]:
        """Every Patient once, page by page, in a stable order."""
