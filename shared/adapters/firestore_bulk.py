"""The matching index read and written in bulk on Firestore (``shared.ports.index_bulk``).

Writes go in atomic batches of up to 500 (``BATCH_LIMIT``) and ``COMMIT_BYTES``, each document whole
and under its precondition: ``exists: false`` for a document that did not exist when read, ``update_time`` equal to
the version read for one that did (a write without a field mask replaces the document: a ``set``, which
the client library offers only without a precondition). A batch fails whole when one precondition fails:
it is then split in halves until the conflicting documents stand alone, so one live event costs a few
extra commits, not a lost batch. Documents are read and written in ``index_codec``'s stored form (the
live path's too).

The ``Write`` messages are built as plain protobufs: the client's own builders go through proto-plus
wrappers, ~0.12-0.18 ms of CPU per document against ~0.04 ms here, on a machine whose two cores the
emulator shares (``docs/benchmarks.md``). For the same reason a commit is one plain ``CommitRequest``
handed to the client's own ``commit`` call (its retries and metadata) wrapped, not converted: the
client's ``WriteBatch.commit`` builds the request from a dict (a proto-plus copy of the 500 writes) and
wraps each write result it returns, which nothing here reads (~0.05 ms of CPU per document, a third of
the client's share of a write). ``tests/unit/test_firestore_bulk_writes.py`` checks that these
messages equal the ones the client builds for ``create`` and ``set`` with the same data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.exceptions import AlreadyExists, Conflict, FailedPrecondition, NotFound
from google.cloud import firestore
from google.cloud.firestore_v1.types import common, document, write
from google.cloud.firestore_v1.types.firestore import CommitRequest as _CommitRequest

from shared.adapters.firestore import BATCH_LIMIT
from shared.adapters.index_codec import decode, encode
from shared.config import Settings
from shared.ports.index_bulk import INDEX_COLLECTIONS, DocWrite, IndexBulkStore, StoredDoc, WriteOutcome

_PRECONDITION_ERRORS = (AlreadyExists, Conflict, FailedPrecondition, NotFound)
# Bytes of writes per commit: a request is refused above 10 MiB (Firestore) or 4 MiB (the emulator's
# gRPC limit); 500 groups of a 1,000,000-patient district's birth date blocks came to 5.4 MB.
COMMIT_BYTES = 3 << 20
_STAMPS = ("updated_at",)  # written at each write: not part of what makes two documents the same

_WritePb, _DocumentPb, _ValuePb = write.Write.pb(), document.Document.pb(), document.Value.pb()
_MapPb, _ArrayPb, _PreconditionPb = document.MapValue.pb(), document.ArrayValue.pb(), common.Precondition.pb()
_CommitRequestPb = _CommitRequest.pb()


def same_document(ours: dict, stored: dict) -> bool:
    return {k: v for k, v in ours.items() if k not in _STAMPS} == {k: v for k, v in stored.items() if k not in _STAMPS}


def _version(snapshot) -> str:
    return snapshot.update_time.rfc3339()


def value_pb(value) -> _ValuePb:
    """A document value (what ``to_doc()`` and ``index_codec`` produce: JSON types) as a ``Value``."""
    if value is None:
        return _ValuePb(null_value=0)
    if isinstance(value, bool):
        return _ValuePb(boolean_value=value)
    if isinstance(value, int):
        return _ValuePb(integer_value=value)
    if isinstance(value, float):
        return _ValuePb(double_value=value)
    if isinstance(value, str):
        return _ValuePb(string_value=value)
    if isinstance(value, dict):
        return _ValuePb(map_value=_MapPb(fields={k: value_pb(v) for k, v in value.items()}))
    if isinstance(value, (list, tuple)):
        return _ValuePb(array_value=_ArrayPb(values=[value_pb(v) for v in value]))
    raise TypeError(f"not a document value: {type(value).__name__}")


def _by_size(indexes: list[int], sizes: list[int], limit: int = COMMIT_BYTES) -> list[list[int]]:
    """``indexes`` in consecutive commits of at most ``limit`` bytes (one write alone may be larger)."""
    commits: list[list[int]] = [[]]
    total = 0
    for i in indexes:
        if commits[-1] and total + sizes[i] > limit:
            commits.append([])
            total = 0
        commits[-1].append(i)
        total += sizes[i]
    return [commit for commit in commits if commit]


def write_pb(path: str, data: dict, expected: str | None) -> _WritePb:
    """The whole document at ``path`` under its precondition (see the module's docstring)."""
    if expected is None:
        precondition = _PreconditionPb(exists=False)
    else:
        precondition = _PreconditionPb(update_time=DatetimeWithNanoseconds.from_rfc3339(expected).timestamp_pb())
    return _WritePb(update=_DocumentPb(name=path, fields={k: value_pb(v) for k, v in data.items()}),
                    current_document=precondition)


class FirestoreIndexBulk(IndexBulkStore):
    def __init__(self, db: firestore.Client, settings: Settings):
        self._db = db
        self._settings = settings
        self._documents = f"projects/{db.project}/databases/{settings.firestore_database}/documents/"

    def _path(self, collection: str, doc_id: str) -> str:
        return f"{self._documents}{self._settings.collection(collection)}/{doc_id}"

    def _collection(self, collection: str):
        if collection not in INDEX_COLLECTIONS:
            raise ValueError(f"not an index collection: {collection}")
        return self._db.collection(self._settings.collection(collection))

    def is_empty(self) -> bool:
        return not any(any(True for _ in self._collection(c).select([]).limit(1).stream()) for c in INDEX_COLLECTIONS)

    def scan(self, collection: str) -> Iterator[StoredDoc]:
        for snapshot in self._collection(collection).stream():
            yield StoredDoc(collection, snapshot.id, decode(collection, snapshot.to_dict()), _version(snapshot))

    def read_many(self, collection: str, doc_ids: Sequence[str]) -> dict[str, StoredDoc]:
        found: dict[str, StoredDoc] = {}
        refs = [self._collection(collection).document(doc_id) for doc_id in doc_ids]
        for start in range(0, len(refs), BATCH_LIMIT):
            for snapshot in self._db.get_all(refs[start:start + BATCH_LIMIT]):
                if snapshot.exists:
                    found[snapshot.id] = StoredDoc(collection, snapshot.id, decode(collection, snapshot.to_dict()),
                                                   _version(snapshot))
        return found

    def write(self, writes: Sequence[DocWrite], *, check_first: bool = False) -> list[WriteOutcome]:
        if len(writes) > BATCH_LIMIT:
            raise ValueError(f"at most {BATCH_LIMIT} writes per call")
        outcomes: list[WriteOutcome | None] = [None] * len(writes)
        pending = list(range(len(writes)))
        if check_first:
            pending = self._drop_same(writes, pending, outcomes)
        pbs = [write_pb(self._path(w.collection, w.doc_id), encode(w.collection, w.data), w.expected) for w in writes]
        for indexes in _by_size(pending, [pb.ByteSize() for pb in pbs]):
            self._commit(writes, pbs, indexes, outcomes)
        return [outcome or WriteOutcome.CONFLICT for outcome in outcomes]

    def _drop_same(self, writes, pending, outcomes) -> list[int]:
        remaining = []
        by_collection: dict[str, list[int]] = {}
        for i in pending:
            by_collection.setdefault(writes[i].collection, []).append(i)
        for collection, indexes in by_collection.items():
            found = self.read_many(collection, [writes[i].doc_id for i in indexes])
            for i in indexes:
                doc = found.get(writes[i].doc_id)
                if doc is not None and same_document(decode(writes[i].collection, writes[i].data), doc.data):
                    outcomes[i] = WriteOutcome.SAME
                else:
                    remaining.append(i)
        return sorted(remaining)

    def _commit(self, writes, pbs, indexes: list[int], outcomes) -> None:
        if not indexes:
            return
        request = _CommitRequest.wrap(_CommitRequestPb(database=self._db._database_string,
                                                      writes=[pbs[i] for i in indexes]))
        try:
            self._db._firestore_api.commit(request=request, metadata=self._db._rpc_metadata)
        except _PRECONDITION_ERRORS:
            if len(indexes) == 1:
                outcomes[indexes[0]] = self._conflict_or_same(writes[indexes[0]])
                return
            half = len(indexes) // 2
            self._commit(writes, pbs, indexes[:half], outcomes)
            self._commit(writes, pbs, indexes[half:], outcomes)
            return
        for i in indexes:
            outcomes[i] = WriteOutcome.WRITTEN

    def _conflict_or_same(self, write: DocWrite) -> WriteOutcome:
        doc = self.read_many(write.collection, [write.doc_id]).get(write.doc_id)
        if doc is not None and same_document(decode(write.collection, write.data), doc.data):
            return WriteOutcome.SAME
        return WriteOutcome.CONFLICT
