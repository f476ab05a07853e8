"""What every use case of the merge pipeline works with (docs/DESIGN.md, "Layering"): ports, the
FHIR client and the settings; ``shared.bootstrap.merge_deps`` builds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.ports.merge_jobs import MergeJobsRepository
from shared.ports.messaging import MessagePublisher


class MergeTaskFailed(RuntimeError):
    """A task or finaliser could not complete; the job records why (ids and statuses only)."""


class MergeRequestIndex(Protocol):
    """The patient index as the merge pipeline uses it (``shared.adapters.patient_index.PatientIndex``).
    ``claim_request`` and ``complete_request`` answer the request as a dict (``public_request``)."""

    def claim_request(self, group: str, request_id: str) -> dict | None: ...

    def complete_request(self, group: str, request_id: str, master: str, duplicates: list[str]) -> dict | None: ...

    def mark_published(self, group: str, request_id: str) -> None: ...

    def record_unmerge(self, group: str, master: str, duplicates: list[str]) -> None: ...


@dataclass
class MergeDeps:
    settings: Settings
    fhir: FhirClient
    jobs: MergeJobsRepository
    index: MergeRequestIndex
    publisher: MessagePublisher
