"""Ports of the matching index: groups (NIK groups and demographic blocks), patient keys, review items.

Services code against these abstract classes; ``shared/adapters/firestore_index.py`` implements them
on Firestore and ``tests/fakes.py`` in memory. A group changes only inside ``GroupRepository.transact``:
the repository loads the group, hands it to the use case's function, and writes it back (with the
review items the function proposed) atomically when it changed, retrying on contention.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from shared.domain.group import Group
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import QueueCounts, QueueFilter, QueuePage, ReviewItem, ReviewStatus

T = TypeVar("T")


class GroupTransaction(ABC):
    """One attempt of a group's transaction. ``group`` is the loaded state: mutate it.

    Before it writes the group, the repository closes the group's pending review items the change
    resolved (``shared.domain.review_closing.close_resolved``), in the same transaction: a stale item
    never outlives the decision that answered it. ``cause`` names what the change is when a human
    decision settles pairs (``"unmerge"``; a ``decide_review`` sets ``"decision"``)."""

    group: Group
    cause: str | None = None

    @abstractmethod
    def propose_reviews(self, items: Sequence[ReviewItem]) -> None:
        """Creates the items that do not exist yet, with the group's write (a decided item is never
        reset to pending)."""

    @abstractmethod
    def decide_review(self, item_id: str, status: ReviewStatus, decision: dict) -> ReviewItem:
        """A human's decision on a pending item of this group, written with the group (who, when, what
        it led to). Raises ``ReviewNotPending`` when the item is decided or closed already (the whole
        change then writes nothing)."""


class GroupRepository(ABC):
    @abstractmethod
    def get(self, group_id: str) -> Group | None:
        """The group as stored now (outside any transaction), or None."""

    @abstractmethod
    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        """Runs ``change`` in a transaction over the group (an empty group when none exists) and
        writes the group back if it changed. ``change`` may run more than once: it must only
        mutate ``transaction.group`` and return a value."""

    @abstractmethod
    def all(self, collection: str) -> Iterator[Group]:
        """Every group of one collection (``nik_index`` or ``demographic_index``): reports only."""

    @abstractmethod
    def with_request_status(self, collection: str, statuses: Iterable[str]) -> Iterator[Group]:
        """The groups of one collection whose request has one of ``statuses`` (a query on
        ``request.status``, not a scan): the sweeper's way to find open and running requests."""


class PatientKeyRepository(ABC):
    @abstractmethod
    def get(self, patient_id: str) -> PatientKeys | None: ...

    @abstractmethod
    def put(self, keys: PatientKeys) -> None: ...

    @abstractmethod
    def delete(self, patient_id: str) -> None: ...

    @abstractmethod
    def count(self) -> int: ...


class ReviewItemRepository(ABC):
    @abstractmethod
    def get(self, item_id: str) -> ReviewItem | None: ...

    @abstractmethod
    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        """Pending items, oldest first."""

    @abstractmethod
    def with_status(self, status: ReviewStatus, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        """Items of one status (e.g. the closed ones, with their closing reasons), oldest first."""

    @abstractmethod
    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        """Records a human decision (who, when, what it led to) on the item."""

    @abstractmethod
    def all(self) -> Iterator[ReviewItem]: ...

    # --- the review workbench's queue and decisions (Firestore: composite indexes in infra/) ---------
    @abstractmethod
    def page(self, queue: QueueFilter, *, after: str | None = None, size: int = 50, now: str) -> QueuePage:
        """One page of pending items matching ``queue``, oldest first (then by id); ``after``: the
        last item id of the previous page."""

    @abstractmethod
    def counts(self, *, reasons: list[str], sources: list[str], now: str) -> QueueCounts:
        """Pending items in total and by reason, source and age; reasons and sources outside the
        given lists are counted as "other"."""

    @abstractmethod
    def reopen(self, item_id: str, expected: ReviewStatus) -> bool:
        """Puts a decided item back to pending, removing the decision fields, if its status is still
        ``expected``; False otherwise."""

    @abstractmethod
    def record_skip(self, item_id: str) -> None:
        """Counts one "not sure" answer on a pending item."""

    @abstractmethod
    def for_group(self, group: str) -> list[ReviewItem]:
        """Every item (any status) of one group, oldest first."""
