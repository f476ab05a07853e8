"""Port of the backfill checkpoints (``backfill_runs/{run_id}``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.domain.backfill import BackfillProgress


class BackfillRunRepository(ABC):
    @abstractmethod
    def load(self, run_id: str) -> BackfillProgress | None: ...

    @abstractmethod
    def save(self, progress: BackfillProgress) -> None: ...
