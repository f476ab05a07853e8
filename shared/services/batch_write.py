"""The batch backfill's writes: index documents in chunks of 500 over a few threads, and the outbox's
merge requests published in chunks, each resumable from the checkpoint (``BackfillProgress.cursors``).
Both stream from the decision files (``batch_files``): a chunk is read when it is due.

A chunk's documents are written under their preconditions (``IndexBulkStore.write``); chunks finish
in any order, and the cursor is the number of leading chunks all done, saved every ``SAVE_EVERY``
seconds. A resumed run writes the chunks from the cursor on with ``check_first``: the ones its killed
predecessor wrote already are recognised as ours (``SAME``) rather than taken for live changes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from functools import partial
from itertools import islice

from shared.domain.backfill import BackfillProgress
from shared.domain.merge_request import MergeRequest
from shared.logging import get_logger
from shared.ports.index_bulk import WRITE_LIMIT, DocWrite, IndexBulkStore, WriteOutcome
from shared.ports.messaging import MessagePublisher
from shared.services.merge_requests import request_message

log = get_logger(__name__)
SAVE_EVERY = 2.0  # seconds between checkpoints while writing
PUBLISH_CHUNK = 1000  # requests in flight at once (one checkpoint each)


class Listener:
    """Progress of the phases (the ops CLI draws bars); does nothing by default."""

    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, done: int) -> None: ...


def chunks(items: Iterable, size: int = WRITE_LIMIT) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_chunks(write: Callable[[list[DocWrite]], list[WriteOutcome]], numbered: Iterable[tuple[int, list[DocWrite]]],
                 *, workers: int, on_written: Callable[[int, list[DocWrite], list[WriteOutcome]], None]) -> None:
    """Writes each numbered chunk with ``write`` (the bulk store's, under its options) in ``workers``
    threads, at most ``2 * workers`` chunks in flight (the chunks are drawn from ``numbered`` as others
    finish: memory stays bounded); ``on_written`` gets each chunk's outcomes as it finishes (in any
    order), in the calling thread."""
    pending = iter(numbered)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="index-write") as pool:
        running = {}
        for index, chunk in pending:
            running[pool.submit(write, chunk)] = (index, chunk)
            if len(running) >= 2 * workers:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, chunk = running.pop(future)
                on_written(index, chunk, future.result())
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(write, following[1])] = following


def write_collection(store: IndexBulkStore, name: str, writes: Iterable[DocWrite], total: int,
                     progress: BackfillProgress, *, save: Callable[[BackfillProgress], None], workers: int,
                     listener: Listener, on_conflict: Callable[[DocWrite], None] | None = None) -> None:
    """Writes ``writes`` (``total`` of them; resuming at chunk ``progress.cursors[name]``). ``on_conflict``
    records each conflicting write in ``progress`` at once, so a checkpoint saved later holds it."""
    start = progress.cursors.get(name, 0)
    resumed = name in progress.cursors   # a run killed in this phase may have written chunks past its cursor
    progress.cursors[name] = start
    listener.phase(f"write {name}", total)
    listener.advance(min(total, start * WRITE_LIMIT))
    conflicts = 0
    finished: set[int] = set()
    last_save = time.monotonic()

    def written(index: int, chunk: list[DocWrite], outcomes: list[WriteOutcome]) -> None:
        nonlocal conflicts, last_save
        for write, outcome in zip(chunk, outcomes, strict=True):
            progress.count(f"writes:{name}", str(outcome))
            if outcome == WriteOutcome.CONFLICT:
                conflicts += 1
                if on_conflict:
                    on_conflict(write)
        finished.add(index)
        listener.advance(len(chunk))
        while progress.cursors[name] in finished:
            progress.cursors[name] += 1
        if time.monotonic() - last_save >= SAVE_EVERY:
            save(progress)
            last_save = time.monotonic()

    write_chunks(partial(store.write, check_first=resumed), enumerate(islice(chunks(writes), start, None), start),
                 workers=workers, on_written=written)
    if conflicts:
        log.warning("backfill_left_to_incremental", collection=name, documents=conflicts)


class WritesWhileDeciding:
    """The group documents of each part, written as soon as the part is decided, while the other parts
    are still being decided: one thread, fed part numbers through a queue (``part_decided``), streams
    each part's file in chunks to ``write_chunks``. Deciding is CPU in the worker processes; writing is
    mostly waiting on Firestore, so the two overlap. Outcomes and conflicting writes are collected here
    and handed to the caller's thread by ``finish`` (a killed run decides again and writes again, with
    ``check_first``: nothing of this needs to be in a checkpoint before the phase ends)."""

    def __init__(self, store: IndexBulkStore, writes_of: Callable[[int], Iterable[DocWrite]], *, workers: int,
                 check_first: bool):
        self._store, self._writes_of = store, writes_of
        self._workers, self._check_first = workers, check_first
        self._parts: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.outcomes: Counter = Counter()
        self.conflicts: list[DocWrite] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-decided-parts", daemon=True)
        self._thread.start()

    def part_decided(self, number: int) -> None:
        """Queues part ``number``'s groups; raises at once what writing raised (a store refusing every
        write stops the run at the next decided part, not when the last of a long phase is decided)."""
        if self._error is not None:
            raise self._error
        self._parts.put(number)

    def _chunks(self) -> Iterator[list[DocWrite]]:
        while (number := self._parts.get()) is not None:
            yield from chunks(self._writes_of(number))

    def _written(self, index: int, chunk: list[DocWrite], outcomes: list[WriteOutcome]) -> None:
        for write, outcome in zip(chunk, outcomes, strict=True):
            self.outcomes[str(outcome)] += 1
            if outcome == WriteOutcome.CONFLICT:
                self.conflicts.append(write)

    def _write(self, chunk: list[DocWrite]) -> list[WriteOutcome]:
        try:
            return self._store.write(chunk, check_first=self._check_first)
        except BaseException as error:
            # Seen by the next ``part_decided`` at once, and stops the chunks: without it, the failure
            # would wait in its future while drawing the next chunk waits for the next decided part.
            self._error = self._error or error
            self._parts.put(None)
            raise

    def _run(self) -> None:
        try:
            write_chunks(self._write, enumerate(self._chunks()), workers=self._workers, on_written=self._written)
        except BaseException as error:  # handed to the caller's thread by ``part_decided`` or ``finish``
            self._error = self._error or error

    def finish(self) -> None:
        """Waits for every part queued to be written; raises what writing raised."""
        self._parts.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def publish_requests(publisher: MessagePublisher, outbox: Iterable[tuple[str, MergeRequest]], total: int,
                     progress: BackfillProgress, *, save: Callable[[BackfillProgress], None],
                     listener: Listener) -> None:
    """Sends the outbox's requests (their groups were written with them marked published), a chunk at
    a time, all of a chunk in flight at once; the cursor is saved after each chunk. Only a crash
    between a chunk's sends and its checkpoint sends those again (the request id makes a copy harmless:
    the fan-out's claim finds the request running)."""
    start = progress.cursors.get("publish", 0)
    listener.phase("publish", total)
    listener.advance(min(total, start * PUBLISH_CHUNK))
    for index, chunk in enumerate(islice(chunks(outbox, PUBLISH_CHUNK), start, None), start):
        publisher.send_all([request_message(group_id, request) for group_id, request in chunk])
        progress.count("publish", "published", len(chunk))
        progress.requests_published += len(chunk)
        progress.cursors["publish"] = index + 1
        save(progress)
        listener.advance(len(chunk))
