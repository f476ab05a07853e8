"""What a FHIR request can answer besides success: the exceptions (never carrying a resource body or a
search value in their message) and one batch entry's outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FhirError(Exception):
    """A FHIR request failed. The message never contains a resource body or a search value."""

    def __init__(self, message: str, *, status: int | None = None, outcome: dict | None = None):
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class NotFound(FhirError):
    pass


class Gone(FhirError):
    pass


class PreconditionFailed(FhirError):
    pass


class RetriesExhausted(FhirError):
    pass


_ERROR_BY_STATUS: dict[int, type[FhirError]] = {404: NotFound, 410: Gone, 412: PreconditionFailed}


@dataclass
class EntryOutcome:
    """The server's answer to one entry of a batch bundle."""

    status: int
    resource: dict | None
    etag: str | None
    location: str | None
    outcome: dict | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300



def entry_outcome(entry: Mapping[str, Any]) -> EntryOutcome:
    """Parse one ``batch-response`` entry (``response.status`` like ``"412 Precondition Failed"``)."""
    response = entry.get("response") or {}
    status_text = str(response.get("status", "")).strip()
    code = status_text.split(" ", 1)[0]
    if not code.isdigit():
        raise FhirError("batch response entry without a numeric status")
    return EntryOutcome(
        status=int(code),
        resource=entry.get("resource"),
        etag=response.get("etag"),
        location=response.get("location"),
        outcome=response.get("outcome"),
    )
