"""The one clock of the service: timestamps stored in Firestore and journals are UTC ISO-8601 strings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_fixed: ContextVar[str | None] = ContextVar("fixed_now", default=None)


def now_iso() -> str:
    return _fixed.get() or datetime.now(UTC).isoformat()


@contextmanager
def fixed_at(stamp: str) -> Iterator[None]:
    """Every timestamp taken inside is ``stamp``. A batch backfill decides under its run's stamp, so a
    run killed after it wrote some documents decides the very same documents again when resumed (a
    merge request's ``created_at`` included) and recognises its own writes."""
    token = _fixed.set(stamp)
    try:
        yield
    finally:
        _fixed.reset(token)
