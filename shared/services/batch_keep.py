"""A durable copy of a batch backfill's decisions, so a run whose work directory is lost resumes.

After deciding, the index holds none of the run's writes yet, but everything after (write, publish,
incremental) reads the decisions files. A Cloud Run Job task keeps its work directory on an in-memory disk
that a retry does not get back; with a keep directory (a Cloud Storage bucket the job mounts read-write),
the decisions are copied there once, and a resumed run that lost them copies them back instead of
refusing (``batch_backfill.WorkDirLost``).

The decide phase also writes groups as parts are decided, on the index as it first read it; that copy
of the index (``stored-index.pickle``) is kept too, so a decide phase killed after it began writing can
decide again on a new disk: its Patients read again from an export, or, read from a FHIR server (which
may have changed since), the spool of them kept beside the index copy (``Patient.ndjson``).

Layout: ``<keep>/<run id>/decisions/...`` (the work directory's own layout) and ``<keep>/<run id>/COMPLETE``,
written last: a copy without it (the task died while copying) is never used; a kept file is copied under
a temporary name and renamed (one object: Cloud Storage FUSE renames a file). Cloud Storage FUSE cannot
rename a folder at once, hence the marker rather than a rename. The bucket's lifecycle rule deletes old
copies (infra: ``google_storage_bucket.backfill_keep``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

MARKER = "COMPLETE"


@dataclass(frozen=True)
class DecisionsKeep:
    directory: Path     # the keep directory (one folder per run under it)

    def _run(self, run_id: str) -> Path:
        return self.directory / run_id

    def has(self, run_id: str) -> bool:
        return (self._run(run_id) / MARKER).exists()

    def save(self, run_id: str, decisions: Path) -> None:
        """Copy ``decisions`` (a run's decisions folder) under the keep directory, marker last."""
        target = self._run(run_id)
        (target / MARKER).unlink(missing_ok=True)
        shutil.rmtree(target / "decisions", ignore_errors=True)
        shutil.copytree(decisions, target / "decisions")
        (target / MARKER).write_text(run_id + "\n", encoding="utf-8")

    def keep_file(self, run_id: str, path: Path) -> None:
        _copy_whole(path, self._run(run_id) / path.name)

    def restore_file(self, run_id: str, path: Path) -> None:
        """Copy the kept file named like ``path`` back to ``path`` (nothing when none was kept)."""
        kept = self._run(run_id) / path.name
        if kept.is_file():
            _copy_whole(kept, path)

    def restore(self, run_id: str, decisions: Path) -> None:
        """Copy the kept decisions back to ``decisions`` (through a partial folder, renamed when whole)."""
        partial = decisions.with_name(decisions.name + ".restoring")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self._run(run_id) / "decisions", partial)
        shutil.rmtree(decisions, ignore_errors=True)
        partial.replace(decisions)


def _copy_whole(source: Path, target: Path) -> None:
    """Copies under a temporary name, renamed when whole: ``target`` is the whole file or absent."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
