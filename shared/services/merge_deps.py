"""What every use case of the merge pipeline works with (docs/DESIGN.md, "Layering"): ports, the
FHIR client and the settings; ``shared.bootstrap.merge_deps`` builds them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.ports.merge_jobs import MergeJobsRepository
from shared.ports.messaging import MessagePublisher
from shared.services.merge_requests import MergeRequests


class MergeTaskFailed(RuntimeError):
    """A task or finaliser could not complete; the job records why (ids and statuses only)."""


@dataclass
class MergeDeps:
    settings: Settings
    fhir: FhirClient
    jobs: MergeJobsRepository
    index: MergeRequests   # the group's merge request: claim, complete, unmerge
    publisher: MessagePublisher
