"""The batch backfill's decisions on disk: every document a part of the store changed, and the merge
requests to publish, streamed to the work directory as the parts are decided and read back chunk by
chunk by the write and publish phases (nothing holds the whole store's decisions in memory).

Layout: ``<directory>/<kind>/<part number>.jsonl``; a document line is ``[collection, id, document,
version read or null]``, an outbox line ``[group id, request]``. Kinds: ``groups`` (both group
collections), ``patient_keys``, ``review_items``, ``outbox``. A document is in the index's stored form
(``index_codec.encode``: a group's members and the evidence as JSON text), encoded once, where it was
decided: the write phases hand it to the bulk store as it is read, instead of parsing the members
from the line only to encode them again in the one process that writes (``docs/benchmarks.md``).
``DecisionFiles.writes`` gives it in that form; ``decoded`` gives its ``to_doc()`` form.

The outbox: a request the decisions opened is written in its group already marked published, and listed
here; the publish phase sends every listed request of a group that was written (resuming at its
cursor). So publishing costs no read and no second write of the group. A run abandoned between writing
and publishing leaves open requests nobody sent: the sweeper sends every open request that has not moved
for ``Settings.stuck_after_seconds``, published or not (``services/sweeper.py``).
"""

from __future__ import annotations

import json
import os
import pickle
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from shared.adapters.index_codec import decode, encode
from shared.adapters.memory_index import MemoryIndex
from shared.domain.group import Group, split_group_id
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.ports.index_bulk import DocWrite, StoredDoc

KINDS = ("groups", "patient_keys", "review_items", "outbox")
_ENCODED = ("groups", "review_items")   # the kinds with text fields (``index_codec.TEXT_FIELDS``)
_STAMPS = ("updated_at",)


def _line(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n"


class PartWriter:
    """One part's files (opened when first written to)."""

    def __init__(self, directory: Path, number: int):
        self._directory = directory
        self._name = f"{number:06d}.jsonl"
        self._files: dict = {}
        self.counts: Counter = Counter()

    def write(self, kind: str, value) -> None:
        if kind not in self._files:
            (self._directory / kind).mkdir(parents=True, exist_ok=True)
            self._files[kind] = (self._directory / kind / self._name).open("w", encoding="utf-8")
        if kind in _ENCODED:
            collection, doc_id, doc, *rest = value
            value = [collection, doc_id, encode(collection, doc), *rest]
        self._files[kind].write(_line(value))
        self.counts[kind] += 1

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._files.values():
            handle.close()


def _same(ours: dict, stored: dict) -> bool:
    return {k: v for k, v in ours.items() if k not in _STAMPS} == {k: v for k, v in stored.items() if k not in _STAMPS}


def changed_documents(index: MemoryIndex, loaded: dict[tuple[str, str], StoredDoc],
                      stamp: str) -> Iterator[tuple[str, list]]:
    """``(kind, line)`` of every document the decisions changed, with the version it had when loaded
    (None: absent), and of every request they opened (the outbox)."""
    if index.keys.deleted:
        raise RuntimeError("a backfill removes no patient from the index")
    docs: list[tuple[str, str, str, dict]] = []
    outbox = []
    for group_id in sorted(index.groups.touched):
        collection, token = split_group_id(group_id)
        group = index.groups.groups[group_id]
        doc = group.to_doc()
        if (collection, token) not in loaded and doc == Group.from_doc(group_id, None).to_doc():
            continue  # an empty group that never existed is not created
        request = group.unpublished_request()
        if request is not None:
            outbox.append([group_id, request.to_doc()])
            doc["request"] = {**doc["request"], "published": True}
        docs.append(("groups", collection, token, doc))
    docs += [("patient_keys", "patient_keys", pid, index.keys.keys[pid].to_doc()) for pid in sorted(index.keys.touched)]
    docs += [("review_items", "review_items", rid, index.reviews.items[rid].to_doc())
             for rid in sorted(index.reviews.touched)]
    written = set()
    for kind, collection, doc_id, doc in docs:
        stored = loaded.get((collection, doc_id))
        if stored is not None and _same(doc, stored.data):
            continue
        written.add(f"{collection}/{doc_id}")
        # Review items carry their own created_at; groups and keys the time of their last write.
        yield kind, [collection, doc_id, doc if collection == "review_items" else {**doc, "updated_at": stamp},
                     stored.version if stored is not None else None]
    for group_id, request in outbox:
        if group_id in written:
            yield "outbox", [group_id, request]


def decoded(write: DocWrite) -> dict:
    """A decision file's document in its ``to_doc()`` form."""
    return decode(write.collection, write.data)


def merge_shared(directory: Path, bucket: str, number: int) -> int:
    """The copies of the shared blocks of one bucket (``<directory>/shared/<bucket>/``: a block several
    parts hold members of, ``batch_parts``) merged into one document each, written as part ``number`` of
    the groups; returns how many. A copy is ``[collection, id, document, version, places of its members]``.
    Each member is decided in one part only; all but at most one copy (the one of the part its deciding
    members are in) are a block of no-match members only. Anything else means a wrong split: it raises."""
    copies: dict[tuple[str, str], list] = {}
    for path in sorted((directory / "shared" / bucket).glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                collection, doc_id, doc, version, places = json.loads(line)
                copies.setdefault((collection, doc_id), []).append((doc, version, places))
    with PartWriter(directory, number) as writer:
        for (collection, doc_id), found in sorted(copies.items()):
            group_id = f"{collection}/{doc_id}"
            empty = {k: v for k, v in Group.from_doc(group_id, None).to_doc().items() if k != "members"}
            rest = [{k: v for k, v in doc.items() if k not in ("members", "updated_at")} for doc, _, _ in found]
            deciding = [doc for doc, rest_of in zip((d for d, _, _ in found), rest, strict=True) if rest_of != empty]
            if len(deciding) > 1 or any(version is not None for _, version, _ in found):
                raise RuntimeError(f"shared block {group_id}: copies of more than one deciding part")
            members = sorted(((place, pid, member) for doc, _, places in found
                              for (pid, member), place in zip(doc["members"].items(), places, strict=True)),
                             key=lambda item: item[0])
            if len({pid for _, pid, _ in members}) != len(members):
                raise RuntimeError(f"shared block {group_id}: a member decided in two parts")
            base = deciding[0] if deciding else found[0][0]
            writer.write("groups", [collection, doc_id, {**base, "members": {pid: m for _, pid, m in members}}, None])
    return writer.counts["groups"]


class DecisionFiles:
    def __init__(self, directory: Path):
        self.directory = directory

    def exists(self) -> bool:
        return self.directory.is_dir()

    def lines(self, kind: str, from_part: int = 0) -> Iterator[str]:
        """The lines of ``kind``, part by part, from part number ``from_part`` on."""
        for path in sorted((self.directory / kind).glob("*.jsonl")):
            if int(path.stem) >= from_part:
                with path.open(encoding="utf-8") as lines:
                    yield from lines

    def writes(self, kind: str, from_part: int = 0) -> Iterator[DocWrite]:
        for line in self.lines(kind, from_part):
            yield DocWrite(*json.loads(line))

    def part_writes(self, kind: str, number: int) -> Iterator[DocWrite]:
        """One part's documents of ``kind`` (none when the part changed none)."""
        path = self.directory / kind / f"{number:06d}.jsonl"
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    yield DocWrite(*json.loads(line))

    def outbox(self) -> Iterator[tuple[str, MergeRequest]]:
        for line in self.lines("outbox"):
            group_id, request = json.loads(line)
            request = MergeRequest.from_doc(request)
            if request.status == RequestStatus.OPEN:
                yield group_id, request


def save_stored(path: Path, stored: list[StoredDoc]) -> None:
    """The index as the decide phase read it, kept in the work directory: a decide phase killed after it
    began writing decides again on this, not on the index its own writes changed."""
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        pickle.dump(stored, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)


def load_stored(path: Path) -> list[StoredDoc]:
    with path.open("rb") as saved:
        return pickle.load(saved)
