"""The one wall clock of the code: timestamps stored in Firestore and journals."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
