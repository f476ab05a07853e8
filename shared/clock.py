"""The one clock of the service: timestamps stored in Firestore and journals are UTC ISO-8601 strings."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
