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

A block joins only its *deciding* members (``shared.domain.pair_screen``): a member all of whose pairs in
the block are no-match before any score (another NIK, a different adult name) changes nothing there, so
it does not join the block's component. That is what keeps a common birth date or first name from
chaining a fifth of a district into one part. Such a block (*shared*) is then held by several parts, each
with its own patients as members; each part writes its copy to ``shared/<bucket>/``, and the copies are
merged into one document (members in the source's order) before the write phase
(``batch_files.merge_shared``).

A block past its member cap (``block_member_cap``) joins only its first ``block_member_cap`` records in the
source's order, the ones the live index lets in (screened as above): a later record finds it full and
nothing there changes for it, so it is decided wherever its other groups put it, in an index that shows it
the block full (``MemoryIndex(full=...)``). Without that, a common first name and birth year (thousands of
records in a store of a million) chained its records' other groups into one part that grew faster than the
store. This holds when the block's contents depend only on who arrives first: it was never stored, no
record is read twice (a second version could leave it), and no record's rules read its members (a NIK
prefix block, the phone block of a record with a NIK).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import shutil
import threading
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.group import DEMOGRAPHIC_GROUPS, GROUP_COLLECTIONS, Group
from shared.domain.pair_screen import ScreenKey, deciding_members, screen_key
from shared.domain.patient import nik_prefix_block, patient_facts, phone_block
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.linkage.model import MatchModel, default_model
from shared.logging import set_level
from shared.ports.index_bulk import StoredDoc
from shared.services.batch_decide import decide, matching_in_memory, open_requests, rule_counts
from shared.services.batch_files import PartWriter, changed_documents, merge_shared
from shared.services.batch_score import PartScores

RANGE_BYTES = 4 << 20       # a keys task: ~3,000 Patients of the generator's size
PART_PATIENTS = 2000        # a decide task: whole components, at least this many patients
SHARED_BUCKETS = 32         # shared blocks' copies are merged bucket by bucket (bounded memory)

# A Patient as the keys step finds it: (file, offset, id, groups, screen key, its NIK prefix block or None,
# the phone block its NIK group reads (``MatchingService._nik_neighbours``) or None).
Placed = tuple[int, int, str, list[str], ScreenKey, str | None, str | None]


@dataclass
class Part:
    number: int
    places: list[tuple[int, int]]          # (file number, offset) of its Patients, in the source's order
    groups: frozenset[str]                 # every group its patients and stored documents can touch
    stored: list[StoredDoc] = field(default_factory=list)
    shared: frozenset[str] = frozenset()   # its blocks other parts hold members of too
    full: dict[str, int] = field(default_factory=dict)   # block past its cap -> its members here (MemoryIndex)


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


def _joining(patients: list[Placed], stored_groups: set[str], settings: Settings, stats: Counter
             ) -> tuple[dict[str, set[int]], dict[str, list[int]]]:
    """Per block that not all its records join: the positions that do. A block the screen applies to
    (``pair_screen``: never stored, plain records only, not a NIK prefix block, whose members the NIK
    group's decision reads) joins its deciding members; a block past its member cap only its first
    ``block_member_cap`` records (those the screen applies to when they are plain), when its contents
    depend on nothing but the order (module docstring). And, per such full block, its records' positions.
    A block not listed joins all its records."""
    cap = settings.block_member_cap
    members: dict[str, list[int]] = {}
    for position, patient in enumerate(patients):
        for group in patient[3]:
            if group.startswith(DEMOGRAPHIC_GROUPS + "/"):
                members.setdefault(group, []).append(position)
    prefixes = {patient[5] for patient in patients if patient[5]}
    read = prefixes | {patient[6] for patient in patients if patient[6]}
    seen: set[str] = set()
    repeated = {patient[2] for patient in patients if patient[2] in seen or seen.add(patient[2])}
    del seen
    joining: dict[str, set[int]] = {}
    full: dict[str, list[int]] = {}
    for group, positions in members.items():
        stats["blocks"] += 1
        stats["block_pairs"] += min(len(positions), cap) * (min(len(positions), cap) - 1) // 2
        stats["largest_block"] = max(stats["largest_block"], len(positions))
        if group in stored_groups or group in prefixes:
            continue
        if len(positions) > cap:
            if group in read or any(patients[p][2] in repeated for p in positions):
                continue
            full[group] = positions
            stats["records_past_cap"] += len(positions) - cap
            positions = positions[:cap]     # the records the live index lets in, in the source's order
        if all(patients[p][4].plain for p in positions):
            found = deciding_members([patients[p][4] for p in positions], settings)
            joining[group] = {positions[i] for i in found}
        else:
            joining[group] = set(positions)
    return joining, full


def split(patients: list[Placed], stored: list[StoredDoc], settings: Settings,
          part_patients: int = PART_PATIENTS, stats: Counter | None = None) -> list[Part]:
    """``patients`` in the source's order -> the parts, in order. ``stats``: filled with the sizes of
    blocks, components and parts (what grows with the store: ``tools.bench partition``)."""
    stats = Counter() if stats is None else stats
    components = _Components()
    joining, full = _joining(patients, {node for doc in stored for node in _stored_links(doc) if "/" in node},
                             settings, stats)
    stats["full_blocks"] = len(full)
    for position, (_, _, patient_id, groups, *_) in enumerate(patients):
        components.join([patient_id, *(g for g in groups if g not in joining or position in joining[g])])
    del joining
    for doc in stored:
        components.join(_stored_links(doc))
    members: dict[int, list[int]] = {}            # component -> its patients (positions), in order
    for position, patient in enumerate(patients):
        members.setdefault(components.find(patient[2]), []).append(position)
    stored_of: dict[int, list[StoredDoc]] = {}
    for doc in stored:
        root = components.find(_stored_links(doc)[0])
        if root in members:                       # a component no patient of the source is in stays as stored
            stored_of.setdefault(root, []).append(doc)
    del components
    stats["components"] = len(members)
    stats["largest_component"] = max(map(len, members.values()), default=0)
    parts: list[Part] = []
    part_at = array("l", bytes(8 * len(patients)))   # position -> its part's number
    positions: list[int] = []
    docs: list[StoredDoc] = []
    for root, component in members.items():       # dicts keep insertion order: by first patient
        positions += component
        docs += stored_of.get(root, [])
        if len(positions) >= part_patients:
            for position in positions:
                part_at[position] = len(parts)
            parts.append(_part(len(parts), patients, positions, docs))
            positions, docs = [], []
    if positions:
        for position in positions:
            part_at[position] = len(parts)
        parts.append(_part(len(parts), patients, positions, docs))
    del members, stored_of
    _mark_full(parts, part_at, full, settings.block_member_cap)
    owner: dict[str, int] = {}
    shared: set[str] = set()
    for part in parts:
        shared.update(g for g in part.groups if owner.setdefault(g, part.number) != part.number)
    for part in parts:
        part.shared = frozenset(part.groups & shared)
    stats["parts"] = len(parts)
    stats["largest_part"] = max((len(part.places) for part in parts), default=0)
    stats["shared_blocks"] = len(shared)
    return parts


def _mark_full(parts: list[Part], part_at: array, full: dict[str, list[int]], cap: int) -> None:
    """Each part holding a record past a block's cap learns how many of the block's members it holds: at
    that many, its copy is the full block (``MemoryIndex(full=...)``)."""
    for group, positions in full.items():
        held = Counter(part_at[p] for p in positions[:cap])
        for number in {part_at[p] for p in positions[cap:]}:
            parts[number].full[group] = held[number]


def _part(number: int, patients: list[Placed], positions: list[int], docs: list[StoredDoc]) -> Part:
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


def _keys(number: int, start: int, end: int) -> list[Placed]:
    matching, settings = _worker["matching"], _worker["settings"]
    found = []
    for offset, patient in _worker["source"].patients_in(number, start, end):
        facts = patient_facts(patient, settings)        # the live path's own placement (``groups_for``)
        prefix = nik_prefix_block(facts, settings)
        phone = phone_block(facts, settings) if facts.kind == "nik" else None
        found.append((number, offset, patient["id"], matching.groups_for(facts), screen_key(facts),
                      f"{DEMOGRAPHIC_GROUPS}/{prefix}" if prefix else None,
                      f"{DEMOGRAPHIC_GROUPS}/{phone}" if phone else None))
    return found


def _decide(part: Part, out: Path, stamp: str, plan: bool, scores: PartScores | None = None) -> PartResult:
    index = MemoryIndex(scope=part.groups, full=part.full, member_cap=_worker["settings"].block_member_cap)
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
        places: dict[str, tuple[int, int]] = {}   # a patient's first place: when it joined its groups
        for patient, place in zip(patients, part.places, strict=True):
            places.setdefault(patient["id"], place)
        with PartWriter(out, part.number) as writer:
            for kind, line in changed_documents(index, loaded, stamp):
                group_id = f"{line[0]}/{line[1]}"
                if kind == "groups" and group_id in part.shared:
                    # This part's members of a block other parts hold members of: merged after deciding.
                    bucket = zlib.crc32(group_id.encode()) % SHARED_BUCKETS
                    writer.write(f"shared/{bucket:02d}", [*line, [places[pid] for pid in line[2]["members"]]])
                    result.documents["shared"] += 1
                else:
                    writer.write(kind, line)
                    result.documents[kind] += 1
    result.peak_rss_mb = _peak_rss_mb()
    return result


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    stats: Counter = field(default_factory=Counter)   # sizes (``split``) and the parent's peak RSS per step

    def run(self, stored: list[StoredDoc], out: Path, stamp: str, *, plan: bool = False) -> PartResult:
        context = multiprocessing.get_context("spawn")   # the parent holds gRPC channels: never fork it
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                 initargs=(self.settings, self.source.folder, os.getpid(), self.model)) as pool:
            began = time.monotonic()
            self.on_phase("decide: keys", None)
            patients: list[Placed] = []
            for found in pool.map(_keys, *zip(*self.source.ranges(self.range_bytes), strict=True)):
                patients += found
                self.on_advance(len(found))
            self.seconds["keys"] = time.monotonic() - began
            self.stats["rss_mb_after_keys"] = round(_peak_rss_mb())
            began = time.monotonic()
            parts = split(patients, stored, self.settings, self.part_patients, self.stats)
            self.seconds["parts"] = time.monotonic() - began
            self.stats["rss_mb_after_parts"] = round(_peak_rss_mb())
            scores: dict[int, PartScores] = {}
            if self.scores_by_part is not None:
                began = time.monotonic()
                self.on_phase("decide: scores by part", None)
                id_at = {(number, offset): patient_id for number, offset, patient_id, *_ in patients}
                scores = self.scores_by_part({id_at[place]: part.number for part in parts for place in part.places})
                del id_at
                self.seconds["scores_by_part"] = time.monotonic() - began
            began = time.monotonic()
            self.on_phase("decide", len(patients))
            del patients
            total = PartResult()
            # The largest first: a part that starts last must not keep one worker busy alone.
            futures = {pool.submit(_decide, part, out, stamp, plan, scores.pop(part.number, None)): len(part.places)
                       for part in sorted(parts, key=lambda part: -len(part.places))}
            for future in as_completed(futures):
                total.add(future.result())
                self.on_advance(futures[future])
            self.seconds["parts_decided"] = time.monotonic() - began
            if total.documents.pop("shared", 0):
                began = time.monotonic()
                buckets = sorted(path.name for path in (out / "shared").iterdir())
                numbers = range(len(parts), len(parts) + len(buckets))
                total.documents["groups"] += sum(pool.map(merge_shared, [out] * len(buckets), buckets, numbers))
                shutil.rmtree(out / "shared")
                self.seconds["shared_merged"] = time.monotonic() - began
        return total
