"""The batch backfill's decide step in parallel: the store split into parts that share no group, each
decided by ``batch_decide.decide`` in a process of its own, its documents streamed to the work directory.

Two patients' decisions can depend on each other only through a group both are in (their NIK group, their
block, the NIK group a demographic match links a record to, which is a member's own NIK group in that
block). So the connected components of patients and their groups are independent: deciding each alone, its
patients in the source's order, gives exactly the documents one pass over the whole store gives
(``tests/unit/test_batch_parts.py``). The stored index joins the components too: a stored group holds its
members (and their NIK groups), a patient's keys its groups, a review item its group.

1. keys: byte ranges of the Patient files, in parallel: each Patient's groups (``MatchingService.groups_of``,
   the live path's own placement) and its place in the files.
2. parts: the components, in the order of their first patient, packed into parts of ``PART_PATIENTS``
   patients or more (a component is never cut).
3. decide: each part in a worker: the stored documents of its components loaded into an index that refuses
   any group outside the part (``MemoryIndex(scope=...)``: a wrong split fails loudly), its Patients read
   back by place and decided, and every document that changed appended to the part's files
   (``batch_files``). Only one part's index is in memory at a time per worker: memory stays bounded
   whatever the store's size. With a scoring engine (``batch_score``), the parent splits the scores by
   part and each worker's model asks its part's pair scores first.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.group import GROUP_COLLECTIONS, Group
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.linkage.model import MatchModel, default_model
from shared.logging import set_level
from shared.ports.index_bulk import StoredDoc
from shared.services.batch_decide import decide, matching_in_memory, open_requests, rule_counts
from shared.services.batch_files import PartWriter, changed_documents
from shared.services.batch_score import PartScores

RANGE_BYTES = 4 << 20       # a keys task: ~3,000 Patients of the generator's size
PART_PATIENTS = 2000        # a decide task: whole components, at least this many patients


@dataclass
class Part:
    number: int
    places: list[tuple[int, int]]          # (file number, offset) of its Patients, in the source's order
    groups: frozenset[str]                 # every group its patients and stored documents can touch
    stored: list[StoredDoc] = field(default_factory=list)


@dataclass
class PartResult:
    patients: int = 0
    results: Counter = field(default_factory=Counter)
    reviews: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    documents: Counter = field(default_factory=Counter)   # file kind -> lines written
    merges: list[dict] = field(default_factory=list)       # the plan (dry runs only)
    review_plan: list[dict] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    scoring: Counter = field(default_factory=Counter)     # score lookups and Splink's clusters (batch_score)

    def add(self, other: PartResult) -> None:
        self.patients += other.patients
        for mine, theirs in ((self.results, other.results), (self.reviews, other.reviews),
                             (self.rules, other.rules), (self.documents, other.documents),
                             (self.scoring, other.scoring)):
            mine.update(theirs)
        self.merges += other.merges
        self.review_plan += other.review_plan
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)


class _Components:
    """Union-find over node names (patient ids and group ids)."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._parent: list[int] = []

    def node(self, name: str) -> int:
        number = self._index.get(name)
        if number is None:
            number = self._index[name] = len(self._parent)
            self._parent.append(number)
        return number

    def root(self, number: int) -> int:
        parent = self._parent
        while parent[number] != number:
            parent[number] = parent[parent[number]]
            number = parent[number]
        return number

    def join(self, names: Iterable[str]) -> int:
        roots = [self.root(self.node(name)) for name in names]
        for other in roots[1:]:
            self._parent[other] = roots[0]
        return roots[0]

    def find(self, name: str) -> int:
        return self.root(self.node(name))


def _stored_links(doc: StoredDoc) -> list[str]:
    """The nodes a stored document joins: itself first."""
    if doc.collection in GROUP_COLLECTIONS:
        members = doc.data.get("members") or {}
        return [f"{doc.collection}/{doc.doc_id}", *members,
                *(f"nik_index/{m['nik_token']}" for m in members.values() if m.get("nik_token"))]
    if doc.collection == "patient_keys":
        return [doc.doc_id, *(doc.data.get("groups") or ()), *(doc.data.get("linked") or ())]
    return [doc.data["group"]]


def split(patients: list[tuple[int, int, str, list[str]]], stored: list[StoredDoc],
          part_patients: int = PART_PATIENTS) -> list[Part]:
    """``patients``: ``(file, offset, id, groups)`` in the source's order -> the parts, in order."""
    components = _Components()
    for _, _, patient_id, groups in patients:
        components.join([patient_id, *groups])
    for doc in stored:
        components.join(_stored_links(doc))
    members: dict[int, list[int]] = {}            # component -> its patients (positions), in order
    for position, (_, _, patient_id, _) in enumerate(patients):
        members.setdefault(components.find(patient_id), []).append(position)
    stored_of: dict[int, list[StoredDoc]] = {}
    for doc in stored:
        root = components.find(_stored_links(doc)[0])
        if root in members:                       # a component no patient of the source is in stays as stored
            stored_of.setdefault(root, []).append(doc)
    parts: list[Part] = []
    positions: list[int] = []
    docs: list[StoredDoc] = []
    for root, component in members.items():       # dicts keep insertion order: by first patient
        positions += component
        docs += stored_of.get(root, [])
        if len(positions) >= part_patients:
            parts.append(_part(len(parts), patients, positions, docs))
            positions, docs = [], []
    if positions:
        parts.append(_part(len(parts), patients, positions, docs))
    return parts


def _part(number: int, patients, positions: list[int], docs: list[StoredDoc]) -> Part:
    positions = sorted(positions)
    groups = {g for p in positions for g in patients[p][3]}
    groups |= {node for doc in docs for node in _stored_links(doc) if "/" in node}
    return Part(number, [(patients[p][0], patients[p][1]) for p in positions], frozenset(groups), docs)


# --- the worker processes ---------------------------------------------------------------------------
_worker: dict = {}


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)   # the run was killed: a worker never outlives it


def _start_worker(settings: Settings, folder: Path, parent: int, model: MatchModel | None) -> None:
    # Warnings and errors only: a line per patient of a whole store would flood the run's output (the
    # ops CLI silences them in its own process too), and cost as much as a third of deciding.
    set_level(logging.WARNING)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _worker.update(settings=settings, source=NdjsonPatients(folder), model=model,
                   matching=matching_in_memory(settings, MemoryIndex(), model=model))


def _keys(number: int, start: int, end: int) -> list[tuple[int, int, str, list[str]]]:
    groups_of = _worker["matching"].groups_of
    return [(number, offset, patient["id"], groups_of(patient))
            for offset, patient in _worker["source"].patients_in(number, start, end)]


def _decide(part: Part, out: Path, stamp: str, plan: bool, scores: PartScores | None = None) -> PartResult:
    index = MemoryIndex(scope=part.groups)
    loaded = {}
    for doc in part.stored:
        loaded[(doc.collection, doc.doc_id)] = doc
        if doc.collection == "patient_keys":
            index.keys.load(PatientKeys.from_doc(doc.doc_id, doc.data))
        elif doc.collection == "review_items":
            index.reviews.load(ReviewItem.from_doc(doc.doc_id, doc.data))
        else:
            index.groups.load(Group.from_doc(f"{doc.collection}/{doc.doc_id}", doc.data))
    patients = list(_worker["source"].patients_at(part.places))
    model, table = _worker["model"], scores.table() if scores else None
    if table is not None:
        model = (model or default_model()).with_scores(table)
    decisions = decide([patients], matching_in_memory(_worker["settings"], index, model=model))
    result = PartResult(decisions.patients, decisions.results, decisions.reviews,
                        rule_counts(index.groups.groups[g] for g in index.groups.touched))
    if table is not None:
        result.scoring = scores.outcome(table, index.groups.groups.values())
    if plan:
        result.merges = [{"request_id": request.id, "group": group_id, "master": request.master,
                          "duplicates": list(request.duplicates), "reason": request.reason}
                         for group_id, request in open_requests(index.groups.groups[g] for g in index.groups.touched)]
        result.review_plan = [{"id": item.id, "group": item.group, "reason": item.reason,
                               "patient_ids": list(item.patient_ids)}
                              for item in (index.reviews.items[i] for i in sorted(index.reviews.touched))]
    else:
        with PartWriter(out, part.number) as writer:
            for kind, line in changed_documents(index, loaded, stamp):
                writer.write(kind, line)
            result.documents = writer.counts
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


@dataclass
class ParallelDecide:
    """Runs the three steps over ``source``'s files with ``workers`` processes."""
    settings: Settings
    source: NdjsonPatients
    workers: int
    model: MatchModel | None = None     # the district's current model, the same in every worker
    # Patient id -> part number -> each part's pair scores (``batch_score.scores_by_part``); None: no engine.
    scores_by_part: Callable[[dict[str, int]], dict[int, PartScores]] | None = None
    range_bytes: int = RANGE_BYTES
    part_patients: int = PART_PATIENTS
    on_phase: Callable[[str, int | None], None] = lambda name, total: None
    on_advance: Callable[[int], None] = lambda done: None
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, stored: list[StoredDoc], out: Path, stamp: str, *, plan: bool = False) -> PartResult:
        context = multiprocessing.get_context("spawn")   # the parent holds gRPC channels: never fork it
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                 initargs=(self.settings, self.source.folder, os.getpid(), self.model)) as pool:
            began = time.monotonic()
            self.on_phase("decide: keys", None)
            patients: list[tuple[int, int, str, list[str]]] = []
            for found in pool.map(_keys, *zip(*self.source.ranges(self.range_bytes), strict=True)):
                patients += found
                self.on_advance(len(found))
            self.seconds["keys"] = time.monotonic() - began
            began = time.monotonic()
            parts = split(patients, stored, self.part_patients)
            self.seconds["parts"] = time.monotonic() - began
            scores: dict[int, PartScores] = {}
            if self.scores_by_part is not None:
                began = time.monotonic()
                self.on_phase("decide: scores by part", None)
                id_at = {(number, offset): patient_id for number, offset, patient_id, _ in patients}
                scores = self.scores_by_part({id_at[place]: part.number for part in parts for place in part.places})
                del id_at
                self.seconds["scores_by_part"] = time.monotonic() - began
            began = time.monotonic()
            self.on_phase("decide", len(patients))
            del patients
            total = PartResult()
            # The largest first: the component every district has that links many blocks through NIK groups
            # (19 % of the patients at 100,000, 28 % at 1,000,000) must not start last.
            futures = {pool.submit(_decide, part, out, stamp, plan, scores.pop(part.number, None)): len(part.places)
                       for part in sorted(parts, key=lambda part: -len(part.places))}
            for future in as_completed(futures):
                total.add(future.result())
                self.on_advance(futures[future])
            self.seconds["parts_decided"] = time.monotonic() - began
        return total
