"""A batch backfill resumed without its work files: before anything is written it reads again; after
deciding it refuses (the index already holds part of its writes), naming the run and the phase."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.backfill import BackfillProgress
from shared.ports.patient_source import PatientSource
from shared.services.batch_backfill import BatchBackfill, WorkDirLost
from tests.fakes import InMemoryBackfillRuns


class _Server(PatientSource):
    """A source read once (like the FHIR server): its pages are spooled."""

    def __init__(self):
        self.reads = 0

    def describe(self) -> str:
        return "test-server"

    def total(self) -> int | None:
        return 0

    def pages(self):
        self.reads += 1
        yield []


def _job(tmp_path, checkpoints, source) -> BatchBackfill:
    return BatchBackfill(settings=Settings(), source=source, store=None, publisher=None,  # type: ignore[arg-type]
                         checkpoints=checkpoints, work_dir=tmp_path / "work")


def test_a_run_that_lost_its_decisions_refuses_to_resume(tmp_path):
    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r1", mode="batch", phase="write-keys"))
    with pytest.raises(WorkDirLost, match="r1 is in phase write-keys"):
        _job(tmp_path, checkpoints, _Server()).run("r1")


def test_a_run_that_lost_its_read_spool_reads_again(tmp_path):
    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r2", mode="batch", phase="decide"))
    source = _Server()
    job = _job(tmp_path, checkpoints, source)
    job._check_work_dir(progress := checkpoints.load("r2"))
    assert progress.phase == "read"
    job._read(progress)
    assert source.reads == 1 and progress.phase == "score" and (tmp_path / "work/read/Patient.ndjson").exists()


def test_a_run_that_lost_its_scores_scores_again(tmp_path):
    from shared.adapters.splink_scoring import SplinkScoring

    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r3", mode="batch", phase="decide"))
    job = _job(tmp_path, checkpoints, _Server())
    job.engine = SplinkScoring("duckdb")
    (tmp_path / "work/read").mkdir(parents=True)
    (tmp_path / "work/read/Patient.ndjson").write_text("")
    job._check_work_dir(progress := checkpoints.load("r3"))
    assert progress.phase == "score"


def _decisions(directory) -> None:
    (directory / "groups").mkdir(parents=True)
    (directory / "groups/000000.jsonl").write_text('["nik_index","t",{},null]\n')


def test_a_run_that_lost_its_decisions_resumes_from_the_kept_copy(tmp_path):
    from shared.services.batch_keep import DecisionsKeep

    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r4", mode="batch", phase="write-keys"))
    keep = DecisionsKeep(tmp_path / "keep")
    _decisions(tmp_path / "decided")
    keep.save("r4", tmp_path / "decided")
    job = _job(tmp_path, checkpoints, _Server())
    job.keep = keep
    job._check_work_dir(progress := checkpoints.load("r4"))
    assert progress.phase == "write-keys"   # nothing to do again: the writes go on at their cursors
    assert (tmp_path / "work/decisions/groups/000000.jsonl").read_text() == '["nik_index","t",{},null]\n'


def test_a_copy_cut_short_is_never_used(tmp_path):
    """The task died while copying: no marker, so the run refuses as it would without a keep."""
    from shared.services.batch_keep import MARKER, DecisionsKeep

    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r5", mode="batch", phase="publish"))
    keep = DecisionsKeep(tmp_path / "keep")
    _decisions(tmp_path / "decided")
    keep.save("r5", tmp_path / "decided")
    (tmp_path / "keep/r5" / MARKER).unlink()
    job = _job(tmp_path, checkpoints, _Server())
    job.keep = keep
    with pytest.raises(WorkDirLost, match="no kept copy"):
        job._check_work_dir(checkpoints.load("r5"))


def test_deciding_keeps_a_copy_before_the_checkpoint_moves_on(tmp_path):
    from shared.services.batch_keep import DecisionsKeep

    job = _job(tmp_path, InMemoryBackfillRuns(), _Server())
    job.keep = DecisionsKeep(tmp_path / "keep")
    job.work_dir.mkdir()

    def decide(progress, files, out, scored):   # the parts' decisions, as the workers write them
        _decisions(out)

    job._decide_parts = decide
    job._files = lambda scratch: None
    progress = BackfillProgress(run_id="r6", mode="batch", phase="decide")
    job._decide(progress)
    assert progress.phase == "write-groups" and job.keep.has("r6")
    assert (tmp_path / "keep/r6/decisions/groups/000000.jsonl").exists()
