"""The progress of a backfill run: what its checkpoint stores and its summary reports. Pure.

A per-patient run (``services/backfill``) pages and saves ``next_path``. A batch run
(``services/batch_backfill``) moves through ``BATCH_PHASES``; ``cursors`` says how far a phase got
(chunks written, request chunks published, patients handed to the incremental path), ``counts`` holds
its tallies (``decisions``, ``reviews``, ``rules``, ``writes``, ...), ``phase_seconds`` the time each phase took.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.clock import now_iso

BATCH_PHASES = ("read", "score", "decide", "write-groups", "write-keys", "write-reviews", "publish", "incremental",
                "done")


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
    # --- batch runs ---
    mode: str = "per-patient"          # per-patient | batch
    phase: str = "read"                # the phase to run next (BATCH_PHASES)
    source: str | None = None
    stamp: str | None = None           # the updated_at every document of the run carries
    create_only: bool = False          # the store was never indexed: every write is a create
    cursors: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)     # name -> {key: count}
    conflicted_groups: list = field(default_factory=list)
    phase_seconds: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    worker_peak_rss_mb: float = 0.0    # the largest deciding worker process (batch runs)

    def count(self, name: str, key: str, n: int = 1) -> None:
        table = self.counts.setdefault(name, {})
        table[key] = table.get(key, 0) + n

    def to_doc(self) -> dict:
        doc = {
            "status": self.status, "next_path": self.next_path, "pages": self.pages, "patients": self.patients,
            "results": dict(self.results), "requests_published": self.requests_published,
            "reviews_proposed": self.reviews_proposed, "seconds": round(self.seconds, 3),
            "updated_at": now_iso(),
        }
        if self.mode == "batch":
            doc.update({"mode": self.mode, "phase": self.phase, "source": self.source, "stamp": self.stamp,
                        "create_only": self.create_only, "cursors": dict(self.cursors), "counts": self.counts,
                        "conflicted_groups": list(self.conflicted_groups),
                        "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
                        "peak_rss_mb": round(self.peak_rss_mb, 1),
                        "worker_peak_rss_mb": round(self.worker_peak_rss_mb, 1)})
        return doc

    @classmethod
    def from_doc(cls, run_id: str, doc: dict) -> BackfillProgress:
        return cls(run_id=run_id, status=doc.get("status", "running"), next_path=doc.get("next_path"),
                   pages=doc.get("pages", 0), patients=doc.get("patients", 0),
                   results=Counter(doc.get("results") or {}), requests_published=doc.get("requests_published", 0),
                   reviews_proposed=doc.get("reviews_proposed", 0), seconds=doc.get("seconds", 0.0),
                   mode=doc.get("mode", "per-patient"), phase=doc.get("phase", "read"), source=doc.get("source"),
                   stamp=doc.get("stamp"), create_only=doc.get("create_only", False),
                   cursors=dict(doc.get("cursors") or {}), counts=dict(doc.get("counts") or {}),
                   conflicted_groups=list(doc.get("conflicted_groups") or []),
                   phase_seconds=dict(doc.get("phase_seconds") or {}), peak_rss_mb=doc.get("peak_rss_mb", 0.0),
                   worker_peak_rss_mb=doc.get("worker_peak_rss_mb", 0.0))

    @property
    def patients_per_second(self) -> float:
        return self.patients / self.seconds if self.seconds else 0.0
