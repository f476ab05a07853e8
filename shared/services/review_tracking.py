"""Groups learn the pending review items they did not track (``Group.reviews``): items proposed before
groups tracked their items are otherwise never read by the group's transactions, so they could not close
themselves (``shared.domain.review_closing``).

``track_pending`` walks the pending items oldest first (the review queue's order, a page at a time) and
hands each group its items in one transaction, which also closes those a decision already answered;
tracking an item again changes nothing, so a pass can be repeated or resumed anywhere. ``track_pending_once``
is the sweeper's: it runs the pass in slices across sweeps, keeping its cursor in the district's upkeep
mark ``review-tracking``, and skips the work for good once a pass reached the end (items proposed since
are tracked when they are created).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import now_iso
from shared.domain.review import QueueFilter, ReviewItem, ReviewStatus
from shared.logging import get_logger
from shared.ports.index import GroupRepository, ReviewItemRepository
from shared.ports.upkeep import UpkeepMarks

log = get_logger(__name__)

TRACKING_MARK = "review-tracking"
PAGE_SIZE = 200
ITEMS_PER_SWEEP = 2000   # one group transaction per item at most: well inside the sweeper's timeout


@dataclass
class TrackingPass:
    groups: int = 0          # group transactions run
    tracked: int = 0         # pending items handed to their group
    closed: int = 0          # of those, closed at once (a decision had answered them)
    after: str | None = None   # the last item handled: the next pass starts after it
    finished: bool = False   # the last pending item was reached


def track(tx, items: dict[str, list[str]]) -> None:
    """The group tracks these pending items (its transaction then checks whether they are answered)."""
    tx.group.reviews.update(items)


def track_pending(items: ReviewItemRepository, groups: GroupRepository, *, after: str | None = None,
                  limit: int | None = None) -> TrackingPass:
    """Hands each group its pending items, from the item after ``after`` on (the start when None), at
    most about ``limit`` items (whole pages): what this pass did, and where the next one starts."""
    progress = TrackingPass(after=after)
    while limit is None or progress.tracked < limit:
        page = items.page(QueueFilter(), after=progress.after, size=PAGE_SIZE, now=now_iso())
        by_group: dict[str, dict[str, list[str]]] = {}
        for item in page.items:
            by_group.setdefault(item.group, {})[item.id] = sorted(set(item.patient_ids))
        for group_id, tracked in sorted(by_group.items()):
            groups.transact(group_id, lambda tx, tracked=tracked: track(tx, tracked))
        progress.groups += len(by_group)
        progress.tracked += len(page.items)
        progress.closed += sum(1 for item in page.items if _closed(items.get(item.id)))
        if page.items:
            progress.after = page.items[-1].id
        if page.next_cursor is None:
            progress.finished = True
            break
    return progress


def _closed(item: ReviewItem | None) -> bool:
    return item is not None and item.status == ReviewStatus.CLOSED


def track_pending_once(items: ReviewItemRepository, groups: GroupRepository, marks: UpkeepMarks, *,
                       limit: int = ITEMS_PER_SWEEP) -> TrackingPass | None:
    """One slice of the district's one-time tracking pass (what it did; None once the pass is done):
    resumes after the item the mark names, records the progress after the slice (counts summed over
    the slices), and marks the pass done when it reached the last pending item. A crash repeats at most
    one slice (tracking is idempotent)."""
    mark = marks.get(TRACKING_MARK) or {}
    if mark.get("status") == "done":
        return None
    done = track_pending(items, groups, after=mark.get("after"), limit=limit)
    totals = {name: int(mark.get(name) or 0) + getattr(done, name) for name in ("groups", "tracked", "closed")}
    marks.put(TRACKING_MARK, {**totals, "after": done.after, "status": "done" if done.finished else "running",
                              "started_at": mark.get("started_at") or now_iso(), "updated_at": now_iso()})
    log.info("review_items_tracked", groups=done.groups, tracked=done.tracked, closed=done.closed,
             finished=done.finished, **{f"total_{k}": v for k, v in totals.items()})
    return done
