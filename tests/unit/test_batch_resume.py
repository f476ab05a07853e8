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


def test_a_decide_phase_that_began_writing_refuses_to_resume_without_its_work_files(tmp_path):
    """It wrote groups already: reading the source or the index again would decide on changed inputs."""
    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(BackfillProgress(run_id="r4", mode="batch", phase="decide",
                                      cursors={"groups-while-deciding": 0}))
    with pytest.raises(WorkDirLost, match="r4 is in phase decide, its groups partly written"):
        _job(tmp_path, checkpoints, _Server()).run("r4")   # no spool of the source

    (tmp_path / "work/read").mkdir(parents=True)
    (tmp_path / "work/read/Patient.ndjson").write_text("")
    job = _job(tmp_path, checkpoints, _Server())
    with pytest.raises(WorkDirLost, match="r4 is in phase decide"):
        job._check_work_dir(checkpoints.load("r4"))       # the spool, but not the index as first read

    progress = checkpoints.load("r4")
    progress.create_only = True                           # the store was empty: there is no copy to keep
    job._check_work_dir(progress)
    assert progress.phase == "decide"


def _resuming_with_a_keep(tmp_path, progress: BackfillProgress, source: PatientSource | None = None,
                          *, decisions: bool = False, index_copy: bool = False) -> BatchBackfill:
    """A job resuming ``progress`` on an empty work directory, with a keep directory that holds the run's
    decisions and/or its copy of the index as first read."""
    from shared.services.batch_keep import DecisionsKeep

    checkpoints = InMemoryBackfillRuns()
    checkpoints.save(progress)
    job = _job(tmp_path, checkpoints, source or _Server())
    job.keep = DecisionsKeep(tmp_path / "keep")
    if decisions:
        (tmp_path / "decided/groups").mkdir(parents=True)
        (tmp_path / "decided/groups/000000.jsonl").write_text('["nik_index","t",{},null]\n')
        job.keep.save(progress.run_id, tmp_path / "decided")
    if index_copy:
        (tmp_path / "stored-index.pickle").write_bytes(b"the index as first read")
        job.keep.keep_file(progress.run_id, tmp_path / "stored-index.pickle")
    return job


def test_a_run_that_lost_its_decisions_resumes_from_the_kept_copy(tmp_path):
    job = _resuming_with_a_keep(tmp_path, BackfillProgress(run_id="r7", mode="batch", phase="write-keys"),
                                decisions=True)
    job._check_work_dir(progress := job.checkpoints.load("r7"))
    assert progress.phase == "write-keys"   # nothing to do again: the writes go on at their cursors
    assert (tmp_path / "work/decisions/groups/000000.jsonl").read_text() == '["nik_index","t",{},null]\n'


def test_a_copy_cut_short_is_never_used(tmp_path):
    """The task died while copying: no marker, so the run refuses as it would without a keep."""
    from shared.services.batch_keep import MARKER

    job = _resuming_with_a_keep(tmp_path, BackfillProgress(run_id="r8", mode="batch", phase="publish"),
                                decisions=True)
    (tmp_path / "keep/r8" / MARKER).unlink()
    with pytest.raises(WorkDirLost, match="no kept copy"):
        job._check_work_dir(job.checkpoints.load("r8"))


def test_a_decide_phase_that_began_writing_resumes_with_the_kept_copy_of_the_index(tmp_path):
    job = _resuming_with_a_keep(tmp_path, BackfillProgress(run_id="r6", mode="batch", phase="decide",
                                                           cursors={"groups-while-deciding": 0}), index_copy=True)
    (tmp_path / "work/read").mkdir(parents=True)
    (tmp_path / "work/read/Patient.ndjson").write_text("")   # a spool (or a source read again the same)
    job._check_work_dir(progress := job.checkpoints.load("r6"))
    assert progress.phase == "decide"
    assert (tmp_path / "work/stored-index.pickle").read_bytes() == b"the index as first read"


def test_a_copied_export_is_copied_again_when_a_decide_phase_that_began_writing_lost_its_disk(tmp_path):
    """The Cloud Run Job reads a mounted export with --copy-first: its files give the same Patients
    again, so with the index copy kept the run reads again and decides again on that copy."""
    from shared.adapters.ndjson_patients import NdjsonPatients

    (tmp_path / "export").mkdir()
    (tmp_path / "export/Patient.ndjson").write_text('{"resourceType": "Patient", "id": "p1"}\n')
    job = _resuming_with_a_keep(tmp_path, BackfillProgress(run_id="r9", mode="batch", phase="decide",
                                                           cursors={"groups-while-deciding": 0}),
                                NdjsonPatients(tmp_path / "export", copy_first=True), index_copy=True)
    job._check_work_dir(progress := job.checkpoints.load("r9"))
    assert progress.phase == "read" and "groups-while-deciding" in progress.cursors
    assert (tmp_path / "work/stored-index.pickle").exists()
    job.keep = None   # without the kept index copy, the same run refuses
    (tmp_path / "work/stored-index.pickle").unlink()
    with pytest.raises(WorkDirLost):
        job._check_work_dir(job.checkpoints.load("r9"))


def test_a_decide_phase_that_began_writing_gets_the_patients_it_read_from_the_keep(tmp_path):
    """A FHIR server is not read again (its Patients may have changed since): the spool kept when the
    decide phase began comes back, and with it the run decides again as its first attempt did."""
    job = _resuming_with_a_keep(tmp_path, BackfillProgress(run_id="r10", mode="batch", phase="decide",
                                                           cursors={"groups-while-deciding": 0}), index_copy=True)
    (tmp_path / "read").mkdir()
    (tmp_path / "read/Patient.ndjson").write_text('{"resourceType": "Patient", "id": "p1"}\n')
    job.keep.keep_file("r10", tmp_path / "read/Patient.ndjson")
    job._check_work_dir(progress := job.checkpoints.load("r10"))
    assert progress.phase == "decide"
    assert (tmp_path / "work/read/Patient.ndjson").read_text() == '{"resourceType": "Patient", "id": "p1"}\n'
