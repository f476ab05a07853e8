"""The batch backfill's bulk writer on the Firestore emulator (``FirestoreIndexBulk.write``): a batch is
committed whole under its preconditions; a document a live event created or changed since it was read is
never overwritten (``conflict``), the rest of its batch is written, and a document already as wanted (our
own write before a crash) is recognised (``same``)."""

from __future__ import annotations

from shared.adapters.firestore_bulk import FirestoreIndexBulk
from shared.adapters.index_codec import decode, encode
from shared.ports.index_bulk import DocWrite, WriteOutcome


def _group(*members: str) -> dict:
    return {"members": {pid: {"status": "active", "name": pid} for pid in members}, "master": None,
            "request": None, "do_not_match": [], "confirmed": []}


def test_a_batch_writes_around_live_changes_and_never_overwrites_them(settings, firestore_db):
    store = FirestoreIndexBulk(firestore_db, settings)
    groups = firestore_db.collection(settings.collection("nik_index"))
    first = [DocWrite("nik_index", f"g{i}", _group(f"p{i}"), None) for i in range(4)]
    assert store.write(first) == [WriteOutcome.WRITTEN] * 4
    read = {doc.doc_id: doc for doc in store.scan("nik_index")}

    # Live events meanwhile: one changes g1, one creates g5.
    groups.document("g1").set(encode("nik_index", _group("p1", "live")))
    groups.document("g5").set(encode("nik_index", _group("live")))

    second = [DocWrite("nik_index", "g0", _group("p0", "q0"), read["g0"].version),
              DocWrite("nik_index", "g1", _group("p1", "q1"), read["g1"].version),
              DocWrite("nik_index", "g5", _group("q5"), None),
              DocWrite("nik_index", "g6", _group("q6"), None)]
    assert store.write(second) == [WriteOutcome.WRITTEN, WriteOutcome.CONFLICT, WriteOutcome.CONFLICT,
                                   WriteOutcome.WRITTEN]
    stored = {snapshot.id: decode("nik_index", snapshot.to_dict()) for snapshot in groups.stream()}
    assert stored["g1"] == _group("p1", "live") and stored["g5"] == _group("live")   # never overwritten
    assert stored["g0"] == _group("p0", "q0") and stored["g6"] == _group("q6")

    # The same creates again (a resumed run's batch the killed run committed): ours, not live changes.
    assert store.write(first[2:]) == [WriteOutcome.SAME, WriteOutcome.SAME]
