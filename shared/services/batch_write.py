"""The batch backfill's writes: index documents in chunks of 500 over a few threads, and the outbox's
merge requests published in chunks, each resumable from the checkpoint (``BackfillProgress.cursors``).
Both stream from the decision files (``batch_files``): a chunk is read when it is due.

A chunk's documents are written under their preconditions (``IndexBulkStore.write``); chunks finish
in any order, and the cursor is the number of leading chunks all done, saved every ``SAVE_EVERY``
seconds. A resumed run writes the chunks from the cursor on with ``check_first``: the ones its killed
predecessor wrote already are recognised as ours (``SAME``) rather than taken for live changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
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


def write_collection(store: IndexBulkStore, name: str, writes: Iterable[DocWrite], total: int,
                     progress: BackfillProgress, *, save: Callable[[BackfillProgress], None], workers: int,
                     listener: Listener, on_conflict: Callable[[DocWrite], None] | None = None) -> None:
    """Writes ``writes`` (``total`` of them; resuming at chunk ``progress.cursors[name]``). ``on_conflict``
    records each conflicting write in ``progress`` at once, so a checkpoint saved later holds it."""
    start = progress.cursors.get(name, 0)
    resumed = start > 0 or progress.counts.get(f"writes:{name}") is not None
    listener.phase(f"write {name}", total)
    listener.advance(min(total, start * WRITE_LIMIT))
    pending = enumerate(islice(chunks(writes), start, None), start)
    conflicts = 0
    finished: set[int] = set()
    last_save = time.monotonic()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix=f"write-{name}") as pool:
        running = {}
        for index, chunk in pending:
            running[pool.submit(store.write, chunk, check_first=resumed)] = (index, chunk)
            if len(running) >= 2 * workers:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, chunk = running.pop(future)
                for write, outcome in zip(chunk, future.result(), strict=True):
                    progress.count(f"writes:{name}", str(outcome))
                    if outcome == WriteOutcome.CONFLICT:
                        conflicts += 1
                        if on_conflict:
                            on_conflict(write)
                finished.add(index)
                listener.advance(len(chunk))
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(store.write, following[1], check_first=resumed)] = following
            while start in finished:
                start += 1
            progress.cursors[name] = start
            if time.monotonic() - last_save >= SAVE_EVERY:
                save(progress)
                last_save = time.monotonic()
    if conflicts:
        log.warning("backfill_left_to_incremental", collection=name, documents=conflicts)


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
