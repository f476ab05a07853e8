"""Batch backfill: the whole store matched in one pass, with the incremental path's own decisions.

Phases (each checkpointed in ``backfill_runs/{run_id}``, bulky state in ``work_dir``; a killed or
interrupted run continues where it stopped when started again with the same run id and work dir):

1. read: every Patient once from the source. A FHIR read (or compressed NDJSON) is spooled to
   ``work_dir/read/`` as NDJSON; uncompressed NDJSON files are read where they are.
   score (with a scoring ``engine``, ``batch_score``): every candidate pair of the blocks the incremental
   path uses, scored in bulk by Splink (DuckDB in process, or Spark) with the district's current model,
   and clustered at the auto-merge threshold; pairs and clusters saved to ``work_dir/scores/``.
2. decide: the store's current index loaded (nothing to load when it was never indexed: every write is
   then a create), the store split into parts that share no group, each part's Patients through the
   production matching code (``batch_decide.decide``) in worker processes (``batch_parts``), each part's
   model asking the part's pair scores first, and the documents that changed streamed to
   ``work_dir/decisions/`` (``batch_files``). Each part's groups are written (as in step 3) as soon as
   the part is decided (the shared blocks' once merged), while other parts are decided
   (``WritesWhileDeciding``): writing waits on Firestore, deciding on the CPU. A decide phase killed
   after it began writing decides again on the index as it first read it (``work_dir/stored-index.pickle``)
   and writes with ``check_first``. With a ``keep`` directory (``batch_keep``), that copy of the index and
   the finished decisions are copied there too, so a run whose work directory is lost resumes (a Cloud
   Run Job retry).
3. write-groups, write-keys, write-reviews: the index in batches of 500 (``batch_write``), each
   document under a precondition: unchanged since it was read, or still absent (write-groups: what the
   decide phase did not write; nothing, but for a run checkpointed before it wrote groups). A group a
   live event changed meanwhile is not overwritten: it is counted, and its patients go to step 5; their
   patient keys are not written (so the incremental path does not take them as indexed already).
4. publish: every merge request the decisions opened (written in their groups marked published: the
   decisions' outbox), in chunks (``batch_write.publish_requests``).
5. incremental: the patients of conflicting groups through the per-patient path (``MatchingService``
   on Firestore, one transaction per group), which reads them from FHIR again.

``dry_run`` stops after deciding and returns the plans (merges and review items), writing nothing.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.clock import now_iso
from shared.config import Settings
from shared.domain.backfill import BackfillProgress
from shared.linkage.model import MatchModel, default_model
from shared.logging import get_logger
from shared.messages import PatientChange
from shared.ports.backfill_runs import BackfillRunRepository
from shared.ports.index_bulk import INDEX_COLLECTIONS, DocWrite, IndexBulkStore, StoredDoc
from shared.ports.messaging import MessagePublisher
from shared.ports.pair_scoring import PairScoring
from shared.ports.patient_source import PatientSource
from shared.services.batch_decide import matching_in_memory
from shared.services.batch_files import DecisionFiles, decoded, load_stored, save_stored
from shared.services.batch_keep import DecisionsKeep
from shared.services.batch_parts import ParallelDecide, PartResult
from shared.services.batch_score import feature_pages, scores_by_part
from shared.services.batch_write import Listener, WritesWhileDeciding, publish_requests, write_collection
from shared.services.matching import MatchingService

log = get_logger(__name__)
# Cursor of the decide phase: present once it began writing group documents (before the first write),
# then the number of parts whose groups it wrote (the write-groups phase writes the files from there on).
GROUPS_WHILE_DECIDING = "groups-while-deciding"
STORED_COPY = "stored-index.pickle"   # in the work directory: the index as the decide phase first read it


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
    write_workers: int = 4
    decide_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    listener: Listener = field(default_factory=Listener)
    model: MatchModel | None = None                 # the district's current model (None: the shipped default)
    engine: PairScoring | None = None               # Splink scores the pairs first (None: the model alone)
    keep: DecisionsKeep | None = None               # a durable copy of the decisions (None: work_dir only)

    # --- the run ---------------------------------------------------------------------------------
    def run(self, run_id: str) -> BackfillProgress:
        progress = self.checkpoints.load(run_id) or BackfillProgress(run_id=run_id, mode="batch",
                                                                     source=self.source.describe())
        if progress.status == "done":
            return progress
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._check_work_dir(progress)
        started = time.monotonic() - progress.seconds
        steps = {"read": self._read, "score": self._score, "decide": self._decide, "write-groups": self._write_groups,
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
        after deciding began writing it is not (the index holds part of the run's writes), so the run refuses
        unless a keep directory holds what it lost."""
        if progress.phase == "decide" and GROUPS_WHILE_DECIDING in progress.cursors:
            stored_copy = self.work_dir / STORED_COPY
            index_copy_lost = not progress.create_only and not stored_copy.exists()
            if self.keep is not None:
                if index_copy_lost:
                    self.keep.restore_file(progress.run_id, stored_copy)
                    index_copy_lost = not stored_copy.exists()
                if not self.source.repeatable and not self._spool.exists():
                    self.keep.restore_file(progress.run_id, self._spool)
            if index_copy_lost or (not self.source.repeatable and not self._spool.exists()):
                raise WorkDirLost(f"backfill run {progress.run_id} is in phase decide, its groups partly written, "
                                  f"but its work files are gone from {self.work_dir}: resume it with its work "
                                  f"directory, or start a new run (it reads the index as it is now)")
        if progress.phase in ("score", "decide") and not self.source.rereadable and not self._spool.exists():
            progress.phase = "read"
        elif progress.phase == "decide" and self.engine and not self._scores_dir.joinpath("pairs.parquet").exists():
            progress.phase = "score"   # the scores are gone: score again (nothing was written yet)
        elif progress.phase not in ("read", "score", "decide") and not self._decisions.exists():
            if self.keep is not None and self.keep.has(progress.run_id):
                self.keep.restore(progress.run_id, self._decisions.directory)
                log.info("backfill_decisions_restored", run_id=progress.run_id, phase=progress.phase)
                return
            raise WorkDirLost(f"backfill run {progress.run_id} is in phase {progress.phase} but "
                              f"{self._decisions.directory} is gone and no kept copy exists: resume it with its "
                              f"work directory, or start a new run (it reads the index as it is now)")

    def dry_run(self) -> tuple[BackfillProgress, BatchPlan]:
        progress = BackfillProgress(run_id="dry-run", mode="batch", source=self.source.describe())
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="dedup-dry-run-") as scratch:
            files = self._files(Path(scratch))
            if self.engine is not None:
                self._score_files(progress, files, Path(scratch) / "scores")
                progress.phase_seconds["score"] = time.monotonic() - began
            decided = self._decide_parts(progress, files, Path(scratch) / "decisions", Path(scratch) / "scores",
                                         self._stored_index(progress), plan=True)
        progress.seconds = time.monotonic() - began
        progress.phase_seconds["decide"] = progress.seconds - progress.phase_seconds.get("score", 0.0)
        progress.peak_rss_mb = peak_rss_mb()
        return progress, BatchPlan(decided.merges, decided.review_plan)

    # --- 1. read ---------------------------------------------------------------------------------
    @property
    def _spool(self) -> Path:
        return self.work_dir / "read" / "Patient.ndjson"

    def _read(self, progress: BackfillProgress) -> None:
        if not self.source.rereadable:
            self._spool_source(self._spool, progress)
        progress.phase = "score"

    def _spool_source(self, spool: Path, progress: BackfillProgress) -> None:
        spool.parent.mkdir(parents=True, exist_ok=True)
        partial = spool.with_suffix(".partial")
        self.listener.phase("read", self.source.total())
        with partial.open("w", encoding="utf-8") as out:
            for page in self.source.pages():
                out.writelines(json.dumps(p, separators=(",", ":")) + "\n" for p in page)
                progress.pages += 1
                self.listener.advance(len(page))
        os.replace(partial, spool)

    def _files(self, scratch: Path) -> NdjsonPatients:
        """The Patients as NDJSON files read by place: the source's own, or a spool of them in
        ``scratch`` (a dry run reads a source that is not rereadable into its scratch directory)."""
        if self.source.rereadable and isinstance(self.source, NdjsonPatients):
            return self.source
        spool = scratch / "read" / "Patient.ndjson"
        if not spool.exists():
            self._spool_source(spool, BackfillProgress(run_id="spool"))
        return NdjsonPatients(spool.parent)

    # --- score (Splink) ----------------------------------------------------------------------------
    @property
    def _scores_dir(self) -> Path:
        return self.work_dir / "scores"

    def _score(self, progress: BackfillProgress) -> None:
        if self.engine is not None:
            self._score_files(progress, self._files(self.work_dir), self._scores_dir)
        progress.phase = "decide"

    def _score_files(self, progress: BackfillProgress, files: NdjsonPatients, out: Path) -> None:
        engine, model = self.engine, self.model or default_model()
        self.listener.phase("score: features", self.source.total())
        matching = matching_in_memory(self.settings, MemoryIndex(), model=model)
        rows = feature_pages(files.pages(), matching, self.settings, on_page=self.listener.advance)
        try:   # the features are computed as the engine takes them in (the Splink phase follows)
            scored = engine.score(rows, model.artefact, out, self.settings.model_merge_weight)
        finally:
            engine.close()
        progress.counts["scoring"] = {"engine": engine.engine, "model_version": model.version,
                                      "pairs": scored.pairs, "clusters": scored.clusters,
                                      "cluster_sizes": {str(k): v for k, v in scored.cluster_sizes.items()},
                                      "seconds": {k: round(v, 2) for k, v in scored.seconds.items()}}

    # --- 2. decide -------------------------------------------------------------------------------
    @property
    def _decisions(self) -> DecisionFiles:
        return DecisionFiles(self.work_dir / "decisions")

    def _stored_index(self, progress: BackfillProgress) -> list[StoredDoc]:
        progress.create_only = self.store.is_empty()
        if progress.create_only:
            return []
        self.listener.phase("load index", None)
        stored = []
        for collection in INDEX_COLLECTIONS:
            for doc in self.store.scan(collection):
                stored.append(doc)
                self.listener.advance(1)
        return stored

    def _decide_parts(self, progress: BackfillProgress, files: NdjsonPatients, out: Path, scored: Path,
                      stored: list[StoredDoc], *, plan: bool = False,
                      on_part_decided: Callable[[int], None] = lambda number: None) -> PartResult:
        progress.stamp = progress.stamp or now_iso()   # kept by a resumed decide phase (``_decide``)
        by_part = None if self.engine is None else lambda part_of: scores_by_part(self.engine, scored, part_of)
        parallel = ParallelDecide(self.settings, files, self.decide_workers, model=self.model,
                                  on_phase=self.listener.phase, on_advance=self.listener.advance,
                                  scores_by_part=by_part, on_part_decided=on_part_decided)
        decided = parallel.run(stored, out, progress.stamp, plan=plan)
        progress.patients = decided.patients
        progress.results = decided.results
        progress.reviews_proposed = sum(decided.reviews.values())
        progress.counts["decisions"] = dict(decided.results)
        progress.counts["reviews"] = dict(decided.reviews)
        progress.counts["rules"] = dict(decided.rules)
        progress.counts["documents"] = dict(decided.documents)
        if self.engine is not None:
            scoring = decided.scoring
            progress.counts["scoring"] = {**progress.counts.get("scoring", {}), "lookups": {
                "scored_by_engine": scoring["scored_by_engine"], "scored_by_model": scoring["scored_by_model"]}}
            progress.counts["clusters"] = {k: scoring[k] for k in ("clusters", "kept_whole", "split_by_rules",
                                                                    "records_in_split_clusters")}
        progress.counts["decide_seconds"] = {k: round(v, 2) for k, v in parallel.seconds.items()}
        progress.worker_peak_rss_mb = max(progress.worker_peak_rss_mb, decided.peak_rss_mb)
        return decided

    def _decide(self, progress: BackfillProgress) -> None:
        partial = self.work_dir / "decisions.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        again = GROUPS_WHILE_DECIDING in progress.cursors   # a killed attempt wrote some of its groups
        if again:
            stored = [] if progress.create_only else load_stored(self.work_dir / STORED_COPY)
        else:
            progress.stamp = now_iso()   # saved before the first write: a resumed attempt decides at this time
            stored = self._stored_index(progress)
            if stored:
                save_stored(self.work_dir / STORED_COPY, stored)
                if self.keep is not None:
                    self.keep.keep_file(progress.run_id, self.work_dir / STORED_COPY)
            if self.keep is not None and not self.source.repeatable:
                # The Patients as read (a FHIR server's change since): a resumed attempt decides on them.
                self.keep.keep_file(progress.run_id, self._spool)
            progress.cursors[GROUPS_WHILE_DECIDING] = 0
            self.checkpoints.save(progress)   # before the first write
        writer = WritesWhileDeciding(self.store, lambda number: DecisionFiles(partial).part_writes("groups", number),
                                     workers=self.write_workers, check_first=again)
        try:
            decided = self._decide_parts(progress, self._files(self.work_dir), partial, self._scores_dir, stored,
                                         on_part_decided=writer.part_decided)
        finally:
            began = time.monotonic()
            writer.finish()
            progress.counts.setdefault("decide_seconds", {})["writes_left"] = round(time.monotonic() - began, 2)
        for outcome, n in writer.outcomes.items():
            progress.count("writes:groups", outcome, n)
        progress.count("written_while_deciding", "groups", sum(writer.outcomes.values()))
        for write in writer.conflicts:
            self._conflicted(progress, write)
        progress.cursors[GROUPS_WHILE_DECIDING] = decided.part_files
        shutil.rmtree(self._decisions.directory, ignore_errors=True)
        os.replace(partial, self._decisions.directory)
        if self.keep is not None:   # before the checkpoint moves on: a task dying while copying decides again
            self.listener.phase("keep decisions", None)
            self.keep.save(progress.run_id, self._decisions.directory)
        progress.phase = "write-groups"

    # --- 3. write --------------------------------------------------------------------------------
    def _write(self, progress: BackfillProgress, name: str, kind: str, writes, on_conflict=None) -> None:
        write_collection(self.store, name, writes, progress.counts.get("documents", {}).get(kind, 0), progress,
                         save=self.checkpoints.save, workers=self.write_workers, listener=self.listener,
                         on_conflict=on_conflict)

    @staticmethod
    def _conflicted(progress: BackfillProgress, write: DocWrite) -> None:   # its patients: to step 5
        group_id = f"{write.collection}/{write.doc_id}"
        if group_id not in progress.conflicted_groups:
            progress.conflicted_groups.append(group_id)

    def _write_groups(self, progress: BackfillProgress) -> None:
        """The groups the decide phase did not write (none, unless it is a run from before it wrote them)."""
        left = self._decisions.writes("groups", progress.cursors.get(GROUPS_WHILE_DECIDING, 0))
        total = (progress.counts.get("documents", {}).get("groups", 0)
                 - progress.counts.get("written_while_deciding", {}).get("groups", 0))
        write_collection(self.store, "groups", left, total, progress, save=self.checkpoints.save,
                         workers=self.write_workers, listener=self.listener,
                         on_conflict=lambda write: self._conflicted(progress, write))
        progress.phase = "write-keys"

    def _left_to_incremental(self, progress: BackfillProgress) -> list[str]:
        """The patients the batch placed in groups it could not write."""
        conflicted = set(progress.conflicted_groups)
        if not conflicted:
            return []
        return sorted({pid for w in self._decisions.writes("groups") if f"{w.collection}/{w.doc_id}" in conflicted
                       for pid in (decoded(w).get("members") or {})})

    def _write_keys(self, progress: BackfillProgress) -> None:
        skipped = set(self._left_to_incremental(progress))
        self._write(progress, "patient_keys", "patient_keys",
                    (w for w in self._decisions.writes("patient_keys") if w.doc_id not in skipped))
        progress.phase = "write-reviews"

    def _write_reviews(self, progress: BackfillProgress) -> None:
        conflicted = set(progress.conflicted_groups)
        self._write(progress, "review_items", "review_items",
                    (w for w in self._decisions.writes("review_items") if w.data.get("group") not in conflicted))
        progress.phase = "publish"

    # --- 4. publish ------------------------------------------------------------------------------
    def _publish(self, progress: BackfillProgress) -> None:
        conflicted = set(progress.conflicted_groups)
        outbox = ((g, r) for g, r in self._decisions.outbox() if g not in conflicted)
        publish_requests(self.publisher, outbox, progress.counts.get("documents", {}).get("outbox", 0), progress,
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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
