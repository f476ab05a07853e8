"""The decide phase's writer (``WritesWhileDeciding``): every document of every part handed to it is written
once, under its precondition, while the caller goes on; conflicts and outcomes come back to the caller's
thread, and so does a failure to write."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from shared.ports.index_bulk import DocWrite, IndexBulkStore, StoredDoc, WriteOutcome
from shared.services.batch_write import WritesWhileDeciding


class _Store(IndexBulkStore):
    """Documents by (collection, id) with a version each; creates only where absent, like Firestore."""

    def __init__(self, fail_after: int | None = None):
        self.docs: dict[tuple[str, str], tuple[dict, str]] = {}
        self.calls: list[tuple[int, bool, str]] = []
        self._fail_after = fail_after
        self._lock = threading.Lock()

    def is_empty(self) -> bool:
        return not self.docs

    def scan(self, collection: str) -> Iterator[StoredDoc]:
        raise NotImplementedError

    def read_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, StoredDoc]:
        raise NotImplementedError

    def write(self, writes: Sequence[DocWrite], *, check_first: bool = False) -> list[WriteOutcome]:
        with self._lock:
            self.calls.append((len(writes), check_first, threading.current_thread().name))
            if self._fail_after is not None and len(self.calls) > self._fail_after:
                raise ConnectionError("the emulator went away")
            outcomes = []
            for w in writes:
                stored = self.docs.get((w.collection, w.doc_id))
                if (stored and stored[1] != w.expected) or (not stored and w.expected is not None):
                    outcomes.append(WriteOutcome.CONFLICT)
                else:
                    self.docs[(w.collection, w.doc_id)] = (w.data, f"v{len(self.calls)}")
                    outcomes.append(WriteOutcome.WRITTEN)
            return outcomes


def _part(number: int, size: int) -> list[DocWrite]:
    return [DocWrite("demographic_index", f"p{number}-g{i}", {"members": f'{{"p{i}":{{}}}}'}, None)
            for i in range(size)]


def test_every_part_handed_over_is_written_once_while_the_caller_goes_on():
    store = _Store()
    store.docs[("demographic_index", "p1-g3")] = ({"members": "{}"}, "live")   # a live event created it
    parts = {0: _part(0, 1200), 1: _part(1, 7), 2: []}
    writer = WritesWhileDeciding(store, parts.__getitem__, workers=2, check_first=False)
    for number in (1, 0, 2):
        writer.part_decided(number)
    writer.finish()
    assert len(store.docs) == 1207
    assert writer.outcomes == {"written": 1206, "conflict": 1}
    assert [(w.collection, w.doc_id) for w in writer.conflicts] == [("demographic_index", "p1-g3")]
    assert store.docs[("demographic_index", "p1-g3")] == ({"members": "{}"}, "live")   # never overwritten
    assert sorted(size for size, _, _ in store.calls) == [7, 200, 500, 500]            # chunks of 500 per part
    assert {check for _, check, _ in store.calls} == {False}
    assert all(name != threading.current_thread().name for _, _, name in store.calls)


def test_a_resumed_decide_phase_writes_with_check_first():
    store = _Store()
    writer = WritesWhileDeciding(store, {0: _part(0, 3)}.__getitem__, workers=1, check_first=True)
    writer.part_decided(0)
    writer.finish()
    assert store.calls and all(check for _, check, _ in store.calls)


def test_a_failed_write_is_raised_in_the_callers_thread():
    store = _Store(fail_after=1)
    writer = WritesWhileDeciding(store, {0: _part(0, 600), 1: _part(1, 600)}.__getitem__, workers=1,
                                 check_first=False)
    with pytest.raises(ConnectionError, match="went away"):   # by part_decided(1) if writing failed already
        writer.part_decided(0)
        writer.part_decided(1)
        writer.finish()


def test_a_failed_write_stops_the_next_decided_part():
    store = _Store(fail_after=1)
    writer = WritesWhileDeciding(store, {0: _part(0, 600), 1: _part(1, 600)}.__getitem__, workers=1,
                                 check_first=False)
    writer.part_decided(0)
    deadline = time.monotonic() + 10
    while writer._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)   # until writing has failed
    with pytest.raises(ConnectionError, match="went away"):
        writer.part_decided(1)
