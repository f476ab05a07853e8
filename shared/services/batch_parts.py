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
   patients or more (a component is never cut): ``batch_split.split``.
3. decide: each part in a worker: the stored documents of its components loaded into an index that refuses
   any group outside the part (``MemoryIndex(scope=...)``: a wrong split fails loudly), its Patients read
   back by place and decided, and every document that changed appended to the part's files
   (``batch_files``). Only one part's index is in memory at a time per worker: memory stays bounded
   whatever the store's size. With a scoring engine (``batch_score``), the parent cuts the scores by part
   on disk (``PairScoring.split_by_part``) and each worker's model asks its part's pair scores first.

How the parts are drawn (the pair screen, blocks past their member cap): ``batch_split``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import shutil
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.clock import fixed_at
from shared.config import Settings
from shared.domain.group import DEMOGRAPHIC_GROUPS, Group
from shared.domain.pair_screen import screen_key
from shared.domain.patient import nik_prefix_block, patient_facts, phone_block
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.linkage.model import MatchModel, default_model
from shared.logging import set_level
from shared.ports.index_bulk import StoredDoc
from shared.services.batch_decide import decide, matching_in_memory, open_requests, rule_counts
from shared.services.batch_facts import FactsReader, FactsWriter
from shared.services.batch_files import PartWriter, changed_documents, merge_shared
from shared.services.batch_score import PartScores
from shared.services.batch_split import PART_PATIENTS, Part, Placed, split

RANGE_BYTES = 4 << 20       # a keys task: ~3,000 Patients of the generator's size
SHARED_BUCKETS = 32         # shared blocks' copies are merged bucket by bucket (bounded memory)



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
    part_files: int = 0    # the parts' files (and the merged shared blocks', numbered after them) are below it

    def add(self, other: PartResult) -> None:
        self.patients += other.patients
        for mine, theirs in ((self.results, other.results), (self.reviews, other.reviews),
                             (self.rules, other.rules), (self.documents, other.documents),
                             (self.scoring, other.scoring)):
            mine.update(theirs)
        self.merges += other.merges
        self.review_plan += other.review_plan
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)


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


def _keys(number: int, start: int, end: int, facts_dir: Path) -> list[Placed]:
    matching, settings = _worker["matching"], _worker["settings"]
    found = []
    with FactsWriter(facts_dir, number, start) as spool:   # read back when the part is decided
        for offset, patient in _worker["source"].patients_in(number, start, end):
            facts = patient_facts(patient, settings)        # the live path's own placement (``groups_for``)
            spool.add(offset, facts)
            prefix = nik_prefix_block(facts, settings)
            phone = phone_block(facts, settings) if facts.kind == "nik" else None
            # One string per group name (the parent holds these for every patient of the store: a block's
            # members, the prefix and phone blocks beside the groups, share theirs).
            groups = [sys.intern(g) for g in matching.groups_for(facts)]
            found.append((number, offset, patient["id"], groups, screen_key(facts),
                          sys.intern(f"{DEMOGRAPHIC_GROUPS}/{prefix}") if prefix else None,
                          sys.intern(f"{DEMOGRAPHIC_GROUPS}/{phone}") if phone else None,
                          not facts.birth_date or "birth_date" in facts.derived))
    return found


def _interned(found: list[Placed]) -> list[Placed]:
    """A keys task's patients with the group names and screen keys' strings the parent holds already."""
    intern = sys.intern
    return [(number, offset, patient_id, [intern(g) for g in groups],
             key._replace(nik_token=key.nik_token and intern(key.nik_token), name=key.name and intern(key.name)),
             prefix and intern(prefix), phone and intern(phone), undated)
            for number, offset, patient_id, groups, key, prefix, phone, undated in found]


def _decide(part: Part, out: Path, stamp: str, plan: bool, scores: PartScores | None, facts_dir: Path) -> PartResult:
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
    with FactsReader(facts_dir) as reader:   # the keys step's (``batch_facts``): not computed a second time
        facts = [list(reader.facts_at(part.places))]
    with fixed_at(stamp):   # the run's time: a resumed run decides the same documents (``shared.clock``)
        decisions = decide([patients], matching_in_memory(_worker["settings"], index, model=model), facts=facts)
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
    # Part ``number``'s files are complete (``<out>/<kind>/<number>.jsonl``): a part decided (its shared
    # blocks are not in them), or a bucket of shared blocks merged (numbered after the parts).
    on_part_decided: Callable[[int], None] = lambda number: None
    seconds: dict[str, float] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)   # sizes (``split``) and the parent's peak RSS per step

    def run(self, stored: list[StoredDoc], out: Path, stamp: str, *, plan: bool = False) -> PartResult:
        context = multiprocessing.get_context("spawn")   # the parent holds gRPC channels: never fork it
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                 initargs=(self.settings, self.source.folder, os.getpid(), self.model)) as pool:
            began = time.monotonic()
            self.on_phase("decide: keys", None)
            patients: list[Placed] = []
            facts_dir = out / "facts"          # each Patient's facts, computed once (``batch_facts``)
            ranges = self.source.ranges(self.range_bytes)
            for found in pool.map(_keys, *zip(*ranges, strict=True), [facts_dir] * len(ranges)):
                patients += _interned(found)
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
            futures = {pool.submit(_decide, part, out, stamp, plan, scores.pop(part.number, None), facts_dir): part
                       for part in sorted(parts, key=lambda part: -len(part.places))}
            try:
                for future in as_completed(futures):
                    total.add(future.result())
                    if not plan:
                        self.on_part_decided(futures[future].number)
                    self.on_advance(len(futures[future].places))
            except BaseException:
                # A part that failed, writing that failed, Ctrl-C: the parts not started are dropped
                # (leaving the pool would otherwise decide every one of them first).
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            total.part_files = len(parts)
            self.seconds["parts_decided"] = time.monotonic() - began
            shutil.rmtree(facts_dir, ignore_errors=True)
            if total.documents.pop("shared", 0):
                began = time.monotonic()
                buckets = sorted(path.name for path in (out / "shared").iterdir())
                merged = {pool.submit(merge_shared, out, bucket, number): number
                          for number, bucket in enumerate(buckets, len(parts))}
                for future in as_completed(merged):
                    total.documents["groups"] += future.result()
                    self.on_part_decided(merged[future])
                total.part_files += len(buckets)
                shutil.rmtree(out / "shared")
                self.seconds["shared_merged"] = time.monotonic() - began
        return total
