"""Port: the merge jobs and their journal (docs/DESIGN.md, "Firestore layout"). The adapter is
``shared.adapters.merge_jobs.MergeJobs``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any


class MergeJobsRepository(ABC):
    @abstractmethod
    def get(self, job_id: str, fields: Iterable[str] | None = None) -> dict | None:
        """The job document, or only ``fields`` (dotted paths); None if there is no such job."""

    @abstractmethod
    def all(self) -> list[dict]:
        """Every merge job (reports)."""

    @abstractmethod
    def finished(self) -> list[dict]:
        """Every merge that completed (status ``done``; unmerged ones are not)."""

    @abstractmethod
    def with_status(self, statuses: Iterable[str]) -> list[dict]:
        """The jobs whose ``status`` is one of ``statuses`` (a query): the sweeper's running ones."""

    @abstractmethod
    def with_duplicate(self, patient_id: str) -> list[dict]:
        """Every job (any status) that merges ``patient_id`` away: one indexed query, for the live
        late-reference fix that runs on every clinical change."""

    @abstractmethod
    def create(self, job: dict) -> tuple[dict, bool]:
        """Stores ``job`` unless a job with its id exists; returns (the stored job, created?)."""

    @abstractmethod
    def record_task(self, job_id: str, resource_type: str, result: dict, *, previous: dict | None = None,
                    journal_done: list[dict] = ()) -> int | None:
        """Records one task's result (and its completed journal entries); the job's ``remaining``
        count afterwards, or None if unknown (a failure, or a duplicate delivery)."""

    @abstractmethod
    def claim_finalise(self, job_id: str) -> bool:
        """True for exactly one caller once every task is done; that caller publishes the finalise
        message (and calls ``release_finalise`` if publishing fails)."""

    @abstractmethod
    def release_finalise(self, job_id: str) -> None: ...

    @abstractmethod
    def update(self, job_id: str, **fields: Any) -> None: ...

    @abstractmethod
    def journal_put(self, job_id: str, entries: Iterable[dict], *, merge: bool = False) -> None:
        """Writes journal entries (each with ``resource_type`` and ``id``)."""

    @abstractmethod
    def journal_entries(self, job_id: str, kind: str | None = None) -> list[dict]:
        """The job's journal; ``kind`` ("patient" or "reference") keeps only those entries."""

    @abstractmethod
    def for_group(self, group: str) -> list[dict]:
        """The group's merge jobs (any status), oldest first: its merge history."""

    @abstractmethod
    def recent(self, *, status: str | None = None, limit: int = 100) -> list[dict]:
        """The latest jobs (newest first), optionally of one status: the workbench's merge list."""
