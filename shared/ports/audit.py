"""Port: the reviewers' audit trail (``shared.domain.audit``). The adapter is
``shared.adapters.audit.FirestoreAuditLog`` (collection ``review_audit``); ``tests/fakes.py`` keeps it
in memory."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.domain.audit import AuditEntry


class AuditLog(ABC):
    @abstractmethod
    def record(self, entry: AuditEntry) -> None:
        """Stores the entry (append only: nothing is ever updated or deleted)."""

    @abstractmethod
    def for_item(self, item_id: str) -> list[AuditEntry]:
        """The item's entries, oldest first."""

    @abstractmethod
    def for_group(self, group: str) -> list[AuditEntry]:
        """The group's entries (every item of it), oldest first."""

    @abstractmethod
    def last_decision_by(self, actor: str) -> AuditEntry | None:
        """The actor's latest approve, reject or undo."""

    @abstractmethod
    def since(self, at: str) -> list[AuditEntry]:
        """Every entry at or after ``at`` (the dashboard's decisions per day)."""
