"""The batch backfill's writes: index documents in chunks of 500 over a few threads, and merge requests
published in batches, each resumable from the checkpoint (``BackfillProgress.cursors``).

A chunk's documents are written under their preconditions (``IndexBulkStore.write``); chunks finish
in any order, and the cursor is the number of leading chunks all done, saved every ``SAVE_EVERY``
seconds. A resumed run writes the chunks from the cursor on with ``check_first``: the ones its killed
predecessor wrote already are recognised as ours (``SAME``) rather than taken for live changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from shared.domain.backfill import BackfillProgress
from shared.domain.group import split_group_id
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.logging import get_logger
from shared.ports.index_bulk import WRITE_LIMIT, DocWrite, IndexBulkStore, WriteOutcome
from shared.ports.messaging import MessagePublisher
from shared.services.merge_requests import MergeRequests, request_message

log = get_logger(__name__)
SAVE_EVERY = 2.0  # seconds between checkpoints while writing
PUBLISH_THREADS = 128


class Listener:
    """Progress of the phases (the ops CLI draws bars); does nothing by default."""

    def phase(self, name: str, total: int | None) -> None: ...

    def advance(self, done: int) -> None: ...


def _chunks(items: Sequence, size: int = WRITE_LIMIT) -> list[Sequence]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def write_collection(store: IndexBulkStore, name: str, writes: list[DocWrite], progress: BackfillProgress, *,
                     save: Callable[[BackfillProgress], None], workers: int, listener: Listener,
                     on_conflict: Callable[[DocWrite], None] | None = None) -> list[DocWrite]:
    """Writes ``writes`` (resuming at ``progress.cursors[name]``); returns the ones that conflicted.
    ``on_conflict`` records each in ``progress`` at once, so a checkpoint saved later holds it."""
    chunks = _chunks(writes)
    start = progress.cursors.get(name, 0)
    resumed = start > 0 or progress.counts.get(f"writes:{name}") is not None
    listener.phase(f"write {name}", len(writes))
    listener.advance(sum(len(c) for c in chunks[:start]))
    conflicts: list[DocWrite] = []
    finished: set[int] = set()
    last_save = time.monotonic()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix=f"write-{name}") as pool:
        running = {}
        pending = iter(range(start, len(chunks)))
        for index in pending:
            running[pool.submit(store.write, chunks[index], check_first=resumed)] = index
            if len(running) >= 2 * workers:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                for write, outcome in zip(chunks[index], future.result(), strict=True):
                    progress.count(f"writes:{name}", str(outcome))
                    if outcome == WriteOutcome.CONFLICT:
                        conflicts.append(write)
                        if on_conflict:
                            on_conflict(write)
                finished.add(index)
                listener.advance(len(chunks[index]))
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(store.write, chunks[following], check_first=resumed)] = following
            while start in finished:
                start += 1
            progress.cursors[name] = start
            if time.monotonic() - last_save >= SAVE_EVERY:
                save(progress)
                last_save = time.monotonic()
    progress.cursors[name] = len(chunks)
    if conflicts:
        log.warning("backfill_left_to_incremental", collection=name, documents=len(conflicts))
    return conflicts


def publish_requests(store: IndexBulkStore, publisher: MessagePublisher, requests: MergeRequests | None,
                     plans: list[tuple[str, MergeRequest]], progress: BackfillProgress, *,
                     save: Callable[[BackfillProgress], None], listener: Listener) -> None:
    """Publishes each planned request still open and unpublished in its group as stored now, then marks
    it published (under the version read; a group that moved on meanwhile is marked in a transaction).
    A chunk published before a crash is found marked and not sent again; only a crash between a
    chunk's sends and its marks sends those again (the request id makes a copy harmless)."""
    chunks = _chunks(plans)
    start = progress.cursors.get("publish", 0)
    listener.phase("publish", len(plans))
    listener.advance(sum(len(c) for c in chunks[:start]))
    with ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="publish") as pool:
        for index in range(start, len(chunks)):
            chunk = chunks[index]
            stored = {}
            for collection in {split_group_id(g)[0] for g, _ in chunk}:
                ids = [split_group_id(g)[1] for g, _ in chunk if split_group_id(g)[0] == collection]
                stored.update({f"{collection}/{d}": doc for d, doc in store.read_many(collection, ids).items()})
            due = []
            for group_id, request in chunk:
                now = (stored.get(group_id).data.get("request") or {}) if group_id in stored else {}
                if now.get("id") == request.id and now.get("status") == RequestStatus.OPEN and not now.get("published"):
                    due.append((group_id, request))
                else:
                    progress.count("publish", "already-published-or-moved-on")
            list(pool.map(lambda plan: publisher.send(request_message(*plan)), due))
            marks = [DocWrite(*split_group_id(g), {"request.published": True}, stored[g].version, fields=True)
                     for g, _ in due]
            for (group_id, request), outcome in zip(due, store.write(marks) if marks else [], strict=True):
                if outcome != WriteOutcome.WRITTEN and requests is not None:
                    requests.mark_published(group_id, request.id)
                progress.count("publish", "published")
            progress.requests_published += len(due)
            progress.cursors["publish"] = index + 1
            save(progress)
            listener.advance(len(chunk))
