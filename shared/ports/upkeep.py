"""Port of the district's upkeep marks (``upkeep/{name}``): what one-time upkeep has run in this district
and how far it got, so a scheduled job does it once, resumes it after a crash, and then skips it."""

from __future__ import annotations

from abc import ABC, abstractmethod


class UpkeepMarks(ABC):
    @abstractmethod
    def get(self, name: str) -> dict | None:
        """The mark of one piece of upkeep, or None when it never started."""

    @abstractmethod
    def put(self, name: str, mark: dict) -> None:
        """Replaces the mark (its progress, or that it is done)."""
