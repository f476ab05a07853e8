"""Batch backfill: the whole store matched in one pass, with the incremental path's own decisions.

Phases (each checkpointed in ``backfill_runs/{run_id}``, bulky state in ``work_dir``; a killed or
interrupted run continues where it stopped when started again with the same run id and work dir):

1. read: every Patient once from the source (FHIR pages in parallel, or NDJSON files). A FHIR read is
   spooled to ``work_dir/read/`` so a resumed run does not read the server again; files are re-read.
2. decide: the store's current index loaded into memory (nothing to load when it was never indexed:
   every write is then a create), every Patient through the production matching code over it
   (``batch_decide``), and the documents that changed saved to ``work_dir/decisions.jsonl``.
3. write-groups, write-keys, write-reviews: the index in batches of 500 (``batch_write``), each
   document under a precondition: unchanged since it was read, or still absent. A group a live event
   changed meanwhile is not overwritten: it is counted, and its patients go to step 5; their patient
   keys are not written (so the incremental path does not take them as indexed already).
4. publish: every merge request the decisions opened, in batches (``batch_write.publish_requests``).
5. incremental: the patients of conflicting groups through the per-patient path (``MatchingService``
   on Firestore, one transaction per group), which reads them from FHIR again.

``dry_run`` stops after deciding and returns the plans (merges and review items), writing nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.clock import now_iso
from shared.config import Settings
from shared.domain.backfill import BackfillProgress
from shared.domain.group import Group, split_group_id
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem
from shared.linkage.model import MatchModel
from shared.logging import get_logger
from shared.messages import PatientChange
from shared.ports.backfill_runs import BackfillRunRepository
from shared.ports.index_bulk import DocWrite, IndexBulkStore
from shared.ports.messaging import MessagePublisher
from shared.ports.patient_source import PatientSource
from shared.services.batch_decide import decide, matching_in_memory, open_requests, rule_counts
from shared.services.batch_write import Listener, publish_requests, write_collection
from shared.services.matching import MatchingService
from shared.services.merge_requests import MergeRequests

log = get_logger(__name__)
GROUP_COLLECTIONS = ("nik_index", "demographic_index")


class WorkDirLost(RuntimeError):
    """A resumed run's decisions are not in its work directory."""


@dataclass
class BatchPlan:
    """What a run decided (all of it for a dry run): merges and review items."""
    merges: list[dict] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)


@dataclass
class BatchBackfill:
    settings: Settings
    source: PatientSource
    store: IndexBulkStore
    publisher: MessagePublisher
    checkpoints: BackfillRunRepository
    work_dir: Path
    incremental: MatchingService | None = None     # the per-patient path on the real store (step 5)
    requests: MergeRequests | None = None           # marks a request published when its group moved on
    write_workers: int = 4
    listener: Listener = field(default_factory=Listener)
    model: MatchModel | None = None                 # the district's current model (None: the shipped default)
    _decided: list[DocWrite] | None = field(default=None, init=False, repr=False)

    # --- the run ---------------------------------------------------------------------------------
    def run(self, run_id: str) -> BackfillProgress:
        progress = self.checkpoints.load(run_id) or BackfillProgress(run_id=run_id, mode="batch",
                                                                     source=self.source.describe())
        if progress.status == "done":
            return progress
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._check_work_dir(progress)
        started = time.monotonic() - progress.seconds
        steps = {"read": self._read, "decide": self._decide, "write-groups": self._write_groups,
                 "write-keys": self._write_keys, "write-reviews": self._write_reviews, "publish": self._publish,
                 "incremental": self._incremental}
        while progress.phase in steps:
            phase = progress.phase
            began = time.monotonic()
            steps[phase](progress)
            progress.phase_seconds[phase] = progress.phase_seconds.get(phase, 0.0) + time.monotonic() - began
            progress.seconds = time.monotonic() - started
            progress.peak_rss_mb = peak_rss_mb()
            self.checkpoints.save(progress)
            log.info("backfill_phase_done", run_id=run_id, phase=phase, seconds=round(time.monotonic() - began, 2))
        progress.status = "done"
        self.checkpoints.save(progress)
        return progress

    def _check_work_dir(self, progress: BackfillProgress) -> None:
        """A run resumed without its work files: reading again is safe before anything was written;
        after deciding it is not (the index holds part of the run's writes), so the run refuses."""
        if progress.phase == "decide" and not self.source.rereadable and not self._spool.exists():
            progress.phase = "read"
        elif progress.phase not in ("read", "decide") and not self._decisions_file.exists():
            raise WorkDirLost(f"backfill run {progress.run_id} is in phase {progress.phase} but "
                              f"{self._decisions_file} is gone: resume it with its work directory, "
                              f"or start a new run (it reads the index as it is now)")

    def dry_run(self) -> tuple[BackfillProgress, BatchPlan]:
        progress = BackfillProgress(run_id="dry-run", mode="batch", source=self.source.describe())
        began = time.monotonic()
        index, _ = self._decide_in_memory(progress, self.source.pages())
        progress.seconds = progress.phase_seconds["decide"] = time.monotonic() - began
        plan = BatchPlan()
        for group_id, request in open_requests(index.groups.groups.values()):
            plan.merges.append({"request_id": request.id, "group": group_id, "master": request.master,
                                "duplicates": list(request.duplicates), "reason": request.reason})
        for item_id in sorted(index.reviews.touched):
            item = index.reviews.items[item_id]
            plan.reviews.append({"id": item.id, "group": item.group, "reason": item.reason,
                                 "patient_ids": list(item.patient_ids)})
        progress.peak_rss_mb = peak_rss_mb()
        return progress, plan

    # --- 1. read ---------------------------------------------------------------------------------
    @property
    def _spool(self) -> Path:
        return self.work_dir / "read" / "Patient.ndjson"

    def _read(self, progress: BackfillProgress) -> None:
        if not self.source.rereadable:
            self._spool.parent.mkdir(parents=True, exist_ok=True)
            partial = self._spool.with_suffix(".partial")
            self.listener.phase("read", self.source.total())
            with partial.open("w", encoding="utf-8") as out:
                for page in self.source.pages():
                    out.writelines(json.dumps(p, separators=(",", ":")) + "\n" for p in page)
                    progress.pages += 1
                    self.listener.advance(len(page))
            os.replace(partial, self._spool)
        progress.phase = "decide"

    def _pages(self) -> Iterator[list[dict]]:
        return self.source.pages() if self.source.rereadable else NdjsonPatients(self._spool.parent).pages()

    # --- 2. decide -------------------------------------------------------------------------------
    def _load_index(self, progress: BackfillProgress) -> tuple[MemoryIndex, dict]:
        index, loaded = MemoryIndex(), {}
        progress.create_only = self.store.is_empty()
        if progress.create_only:
            return index, loaded
        self.listener.phase("load index", None)
        for collection in (*GROUP_COLLECTIONS, "patient_keys", "review_items"):
            for doc in self.store.scan(collection):
                loaded[(collection, doc.doc_id)] = (doc.version, _digest(doc.data))
                if collection == "patient_keys":
                    index.keys.load(PatientKeys.from_doc(doc.doc_id, doc.data))
                elif collection == "review_items":
                    index.reviews.load(ReviewItem.from_doc(doc.doc_id, doc.data))
                else:
                    index.groups.load(Group.from_doc(f"{collection}/{doc.doc_id}", doc.data))
                self.listener.advance(1)
        return index, loaded

    def _decide_in_memory(self, progress: BackfillProgress, pages) -> tuple[MemoryIndex, dict]:
        index, loaded = self._load_index(progress)
        self.listener.phase("decide", self.source.total())
        decisions = decide(pages, matching_in_memory(self.settings, index, model=self.model),
                           on_page=self.listener.advance)
        progress.patients = decisions.patients
        progress.results = decisions.results
        progress.reviews_proposed = sum(decisions.reviews.values())
        progress.counts["decisions"] = dict(decisions.results)
        progress.counts["reviews"] = dict(decisions.reviews)
        progress.counts["rules"] = dict(rule_counts(index.groups.groups[g] for g in index.groups.touched))
        return index, loaded

    def _decide(self, progress: BackfillProgress) -> None:
        index, loaded = self._decide_in_memory(progress, self._pages())
        progress.stamp = now_iso()
        partial = self.work_dir / "decisions.partial"
        self._decided = list(_changed_documents(index, loaded, progress.stamp))
        with partial.open("w", encoding="utf-8") as out:
            for write in self._decided:
                out.write(json.dumps([write.collection, write.doc_id, write.data, write.expected],
                                     separators=(",", ":")) + "\n")
        os.replace(partial, self._decisions_file)
        progress.phase = "write-groups"

    @property
    def _decisions_file(self) -> Path:
        return self.work_dir / "decisions.jsonl"

    def _writes(self, collections: tuple[str, ...]) -> list[DocWrite]:
        if self._decided is None:  # read once per process: the phases after deciding all use it
            with self._decisions_file.open(encoding="utf-8") as lines:
                self._decided = [DocWrite(*json.loads(line)) for line in lines]
        return [write for write in self._decided if write.collection in collections]

    # --- 3. write --------------------------------------------------------------------------------
    def _write(self, progress: BackfillProgress, name: str, writes: list[DocWrite], on_conflict=None) -> None:
        write_collection(self.store, name, writes, progress, save=self.checkpoints.save,
                         workers=self.write_workers, listener=self.listener, on_conflict=on_conflict)

    def _write_groups(self, progress: BackfillProgress) -> None:
        def left_to_incremental(write: DocWrite) -> None:
            group_id = f"{write.collection}/{write.doc_id}"
            if group_id not in progress.conflicted_groups:
                progress.conflicted_groups.append(group_id)

        self._write(progress, "groups", self._writes(GROUP_COLLECTIONS), left_to_incremental)
        progress.phase = "write-keys"

    def _left_to_incremental(self, progress: BackfillProgress) -> list[str]:
        """The patients the batch placed in groups it could not write."""
        conflicted = set(progress.conflicted_groups)
        if not conflicted:
            return []
        return sorted({pid for w in self._writes(GROUP_COLLECTIONS) if f"{w.collection}/{w.doc_id}" in conflicted
                       for pid in (w.data.get("members") or {})})

    def _write_keys(self, progress: BackfillProgress) -> None:
        skipped = set(self._left_to_incremental(progress))
        self._write(progress, "patient_keys", [w for w in self._writes(("patient_keys",)) if w.doc_id not in skipped])
        progress.phase = "write-reviews"

    def _write_reviews(self, progress: BackfillProgress) -> None:
        conflicted = set(progress.conflicted_groups)
        self._write(progress, "review_items", [w for w in self._writes(("review_items",))
                                               if w.data.get("group") not in conflicted])
        progress.phase = "publish"

    # --- 4. publish ------------------------------------------------------------------------------
    def _publish(self, progress: BackfillProgress) -> None:
        conflicted = set(progress.conflicted_groups)
        groups = [Group.from_doc(f"{w.collection}/{w.doc_id}", w.data) for w in self._writes(GROUP_COLLECTIONS)]
        requests = [(g, r) for g, r in open_requests(groups) if g not in conflicted]
        publish_requests(self.store, self.publisher, self.requests, requests, progress,
                         save=self.checkpoints.save, listener=self.listener)
        progress.phase = "incremental"

    # --- 5. incremental --------------------------------------------------------------------------
    def _incremental(self, progress: BackfillProgress) -> None:
        patients = self._left_to_incremental(progress)
        done = progress.cursors.get("incremental", 0)
        self.listener.phase("incremental", len(patients))
        for pid in patients[done:]:
            if self.incremental is None:
                progress.count("incremental", "left-to-live-events")
            else:
                outcome = self.incremental.handle_change(PatientChange(pid, "upsert"))
                progress.count("incremental", outcome.result)
                progress.requests_published += len(outcome.published)
            done += 1
            progress.cursors["incremental"] = done
            self.listener.advance(1)
        progress.phase = "done"


def _digest(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "updated_at"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _changed_documents(index: MemoryIndex, loaded: dict, stamp: str) -> Iterator[DocWrite]:
    """Every document the decisions changed, with the version it had when loaded (None: absent)."""
    if index.keys.deleted:
        raise RuntimeError("a backfill removes no patient from the index")
    docs: list[tuple[str, str, dict]] = []
    for group_id in sorted(index.groups.touched):
        collection, token = split_group_id(group_id)
        doc = index.groups.groups[group_id].to_doc()
        if (collection, token) in loaded or doc != Group.from_doc(group_id, None).to_doc():
            docs.append((collection, token, doc))  # an empty group that never existed is not created
    docs += [("patient_keys", pid, index.keys.keys[pid].to_doc()) for pid in sorted(index.keys.touched)]
    docs += [("review_items", rid, index.reviews.items[rid].to_doc()) for rid in sorted(index.reviews.touched)]
    for collection, doc_id, doc in docs:
        version, digest = loaded.get((collection, doc_id), (None, None))
        if digest is not None and digest == _digest(doc):
            continue
        # Review items carry their own created_at; groups and keys the time of their last write.
        yield DocWrite(collection, doc_id, doc if collection == "review_items" else {**doc, "updated_at": stamp},
                       version)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
