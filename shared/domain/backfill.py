"""The progress of a backfill run: what its checkpoint stores and its summary reports. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.clock import now_iso


@dataclass
class BackfillProgress:
    run_id: str
    status: str = "running"  # running | done
    next_path: str | None = None
    pages: int = 0
    patients: int = 0
    results: Counter = field(default_factory=Counter)  # matching outcome -> count
    requests_published: int = 0
    reviews_proposed: int = 0
    seconds: float = 0.0

    def to_doc(self) -> dict:
        return {
            "status": self.status, "next_path": self.next_path, "pages": self.pages, "patients": self.patients,
            "results": dict(self.results), "requests_published": self.requests_published,
            "reviews_proposed": self.reviews_proposed, "seconds": round(self.seconds, 3),
            "updated_at": now_iso(),
        }

    @classmethod
    def from_doc(cls, run_id: str, doc: dict) -> BackfillProgress:
        return cls(run_id=run_id, status=doc.get("status", "running"), next_path=doc.get("next_path"),
                   pages=doc.get("pages", 0), patients=doc.get("patients", 0),
                   results=Counter(doc.get("results") or {}), requests_published=doc.get("requests_published", 0),
                   reviews_proposed=doc.get("reviews_proposed", 0), seconds=doc.get("seconds", 0.0))

    @property
    def patients_per_second(self) -> float:
        return self.patients / self.seconds if self.seconds else 0.0
