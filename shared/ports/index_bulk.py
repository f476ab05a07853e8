"""Port: the matching index read and written in bulk (the batch backfill), beside live transactions.

Documents are addressed by their logical collection (``nik_index``, ``demographic_index``,
``patient_keys``, ``review_items``) and id, in their ``to_doc()`` form. ``version`` is the store's own
stamp of a document's last write (Firestore's update time, as text): a write that names the version
it read succeeds only if nobody wrote the document since; a write that names none only creates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

WRITE_LIMIT = 500  # documents per write call: Firestore's batched-write limit
INDEX_COLLECTIONS = ("nik_index", "demographic_index", "patient_keys", "review_items")


@dataclass(frozen=True)
class StoredDoc:
    collection: str
    doc_id: str
    data: dict
    version: str


@dataclass(frozen=True)
class DocWrite:
    collection: str
    doc_id: str
    data: dict                   # the whole document: its ``to_doc()`` form, or with its text fields encoded already
    expected: str | None         # the version read; None: create only


class WriteOutcome(StrEnum):
    WRITTEN = "written"
    SAME = "same"                # already holds exactly this (our own earlier write, before a crash)
    CONFLICT = "conflict"        # written by someone else since it was read (or created meanwhile)


class IndexBulkStore(ABC):
    @abstractmethod
    def is_empty(self) -> bool:
        """Whether the index was never written (no group, patient key or review item)."""

    @abstractmethod
    def scan(self, collection: str) -> Iterator[StoredDoc]:
        """Every document of one collection with its version."""

    @abstractmethod
    def read_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, StoredDoc]:
        """The documents that exist among ``doc_ids`` (one round trip per few hundred)."""

    @abstractmethod
    def write(self, writes: Sequence[DocWrite], *, check_first: bool = False) -> list[WriteOutcome]:
        """Writes up to 500 whole documents, each only under its precondition; one outcome per write,
        in order. ``check_first`` (a resumed run) reads them first and leaves those already as wanted."""
