"""Port of the FHIR server: what the services call on it.

``shared.fhir.client.FhirClient`` implements it over HTTP (retries, paging, the patient data rule);
``tests.fakes.InMemoryFhir`` in memory. Errors are in ``shared.fhir.errors``: ``NotFound``
(404), ``Gone`` (410, deleted), ``PreconditionFailed`` (412, ``if_match`` stale); a batch answers
per entry with ``EntryOutcome`` instead of raising.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from shared.fhir.errors import EntryOutcome
from shared.fhir.wire import Params


class FhirPort(ABC):
    # The base URL the server's links are relative to (``next_link_path(link, base_url)``):
    # an ``httpx.URL`` on the client, a string in fakes.
    base_url: Any

    # --- reads ---
    @abstractmethod
    def read(self, resource_type: str, id: str) -> dict:
        """The current version; ``NotFound`` / ``Gone`` (deleted)."""

    @abstractmethod
    def vread(self, resource_type: str, id: str, version_id: str) -> dict: ...

    @abstractmethod
    def search_bundles(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """Searchset bundles, page by page, following ``next`` links to the end."""

    @abstractmethod
    def search(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """The resources of every page (OperationOutcome entries left out)."""

    @abstractmethod
    def everything(self, patient_id: str, params: Params | None = None) -> Iterator[dict]:
        """``Patient/<id>/$everything``: the patient and every resource in its compartment."""

    @abstractmethod
    def get_path(self, path: str) -> dict:
        """GET a path relative to the base (a saved next-page path) and return its JSON."""

    @abstractmethod
    def history(self, resource_type: str, id: str) -> list[dict]:
        """Every stored version, newest first; deletions carry no resource."""

    @abstractmethod
    def capability(self) -> dict:
        """The server's CapabilityStatement."""

    # --- writes ---
    @abstractmethod
    def create(self, resource: dict) -> dict: ...

    @abstractmethod
    def update(self, resource: dict, *, if_match: str | None = None) -> dict:
        """PUT ``Type/id``; ``PreconditionFailed`` when ``if_match`` is not the current versionId."""

    @abstractmethod
    def batch(self, entries: list[dict]) -> list[EntryOutcome]:
        """A ``batch`` Bundle of these entries; one outcome per entry, same order."""
