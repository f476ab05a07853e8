"""The batch backfill against the local stack: FHIR pages read in parallel, the index written in bulk,
a run SIGKILLed while it writes the index resumes to the same end state without publishing anything
twice (on a new, empty work directory, from its kept decisions, as a retried Cloud Run Job task does), a
second run over the indexed store changes nothing, and NDJSON is read without the server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.adapters.index_codec import decode
from shared.adapters.memory_index import MemoryIndex
from shared.adapters.ndjson_patients import NdjsonPatients
from shared.bootstrap import batch_backfill
from shared.fhir.patient_scan import FhirPatientScan
from shared.services.batch_decide import decide, matching_in_memory, open_requests
from tools.dataset.generate import Params, generate

pytestmark = pytest.mark.fresh_fhir
REPO = Path(__file__).resolve().parents[2]
PATIENTS = 2500


@pytest.fixture(scope="module")
def district(tmp_path_factory, fresh_fhir):
    """A generated district's Patients, loaded into the module's empty FHIR server."""
    from shared.config import Settings
    from shared.fhir.client import FhirClient

    directory = tmp_path_factory.mktemp("district")
    generate(directory, Params(patients=PATIENTS, seed=5, resources_per_patient=0.0), Settings())
    patients = [p for page in NdjsonPatients(directory).pages() for p in page]
    with FhirClient(fresh_fhir.base_url) as client:
        for start in range(0, len(patients), 500):
            client.batch([{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
                          for p in patients[start:start + 500]])
    return directory


def _bare(doc: dict) -> dict:
    bare = {k: v for k, v in doc.items() if k not in ("updated_at", "created_at", "closed_at")}
    if bare.get("request"):
        bare["request"] = _bare(bare["request"])
    return bare


def _index(db, settings) -> dict:
    """The index as stored, in its ``to_doc()`` form (``index_codec``: members and evidence are text)."""
    return {(c, s.id): _bare(decode(c, s.to_dict())) for c in ("nik_index", "demographic_index", "patient_keys",
                                                               "review_items")
            for s in db.collection(settings.collection(c)).stream()}


def _expected(settings, fhir) -> tuple[dict, set[str]]:
    """What the run must leave: the in-memory decisions over the same scan, requests published."""
    index = MemoryIndex()
    decide(FhirPatientScan(fhir).pages(), matching_in_memory(settings, index))
    docs = {}
    for group_id, group in index.groups.groups.items():
        collection, token = group_id.split("/", 1)
        docs[(collection, token)] = _bare(group.to_doc())
        if group.request:
            docs[(collection, token)]["request"]["published"] = True
    docs.update({("patient_keys", pid): _bare(k.to_doc()) for pid, k in index.keys.keys.items()})
    docs.update({("review_items", rid): _bare(i.to_doc()) for rid, i in index.reviews.items.items()})
    return docs, {r.id for _, r in open_requests(index.groups.groups.values())}


def _ops(settings, *args, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url,
           "DEDUP_ENVIRONMENT": "local", "CI": "true", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "ops", "backfill", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_run_killed_while_writing_resumes_to_the_same_end_state(settings, fhir, firestore_db, topics, district,
                                                                  tmp_path):
    """Killed in the write phases after deciding (the groups were written while deciding: it dies writing
    the patient keys), resumed from the checkpoint's cursors."""
    work = tmp_path / "work"
    args = ["--work-dir", str(work), "--keep-dir", str(tmp_path / "keep"), "--write-workers", "1",
            "--page-size", "300"]
    run = _ops(settings, "--run-id", "killed", *args)
    runs = firestore_db.collection(settings.collection("backfill_runs"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        doc = runs.document("killed").get()
        if doc.exists and doc.to_dict().get("phase") in ("write-groups", "write-keys"):
            break
        time.sleep(0.05)
    keys = firestore_db.collection(settings.collection("patient_keys"))
    while time.monotonic() < deadline and run.poll() is None and not list(keys.limit(1).stream()):
        time.sleep(0.02)  # until the first batches are in
    assert run.poll() is None, run.stdout.read()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    partial = _index(firestore_db, settings)
    written_keys = sum(1 for c, _ in partial if c == "patient_keys")
    expected, request_ids = _expected(settings, fhir)
    assert 0 < written_keys < PATIENTS, "killed mid-write"
    assert {k for k in partial if k[0] != "patient_keys"} == {k for k in expected if k[0] in ("nik_index",
                                                                                           "demographic_index")}
    assert topics.pull("merge-requests", count=None, timeout=1.0) == []

    # The retry: a new task on an empty disk; the run id is the Cloud Run execution's name.
    shutil.rmtree(work)
    resumed = _ops(settings, *args, env={"CLOUD_RUN_EXECUTION": "killed"})
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert runs.document("killed").get().to_dict()["status"] == "done"
    assert _index(firestore_db, settings) == expected
    published = topics.pull("merge-requests", count=len(request_ids), timeout=30.0, max_messages=len(request_ids) + 50)
    assert sorted(m["request_id"] for m in published) == sorted(request_ids)   # each once

    # Over an indexed store a new run changes nothing and publishes nothing.
    again = batch_backfill(settings, work_dir=tmp_path / "again").run("again")
    assert again.status == "done" and not again.create_only
    assert again.results == {"stale": PATIENTS} and again.requests_published == 0
    assert _index(firestore_db, settings) == expected
    assert topics.pull("merge-requests", count=None, timeout=1.0) == []


def test_a_dry_run_prints_the_plan_and_writes_nothing(settings, fhir, firestore_db, topics, district, tmp_path):
    progress, plan = batch_backfill(settings, work_dir=tmp_path / "dry").dry_run()
    _, request_ids = _expected(settings, fhir)
    assert progress.patients == PATIENTS and sorted(m["request_id"] for m in plan.merges) == sorted(request_ids)
    assert plan.reviews and all(item["patient_ids"] for item in plan.reviews)
    assert _index(firestore_db, settings) == {}
    assert not list(firestore_db.collection(settings.collection("backfill_runs")).stream())
    assert not (tmp_path / "dry").exists()
    assert topics.pull("merge-requests", count=None, timeout=1.0) == []


@pytest.mark.parametrize("copy_first", [False, True], ids=["in-place", "copied-first"])
def test_ndjson_is_read_without_the_server_and_gives_the_fhir_runs_index(settings, fhir, firestore_db, topics,
                                                                        district, tmp_path, copy_first):
    """``copy_first`` (a bucket mounted in the Cloud Run Job): one sequential read into the run's spool,
    then the same decisions as reading the files in place."""
    job = batch_backfill(settings, work_dir=tmp_path / "work", ndjson=district, with_fhir=False,
                         copy_first=copy_first)
    progress = job.run("from-files")
    assert progress.status == "done" and progress.patients == PATIENTS and progress.create_only
    assert (tmp_path / "work" / "read" / "Patient.ndjson").exists() == copy_first
    index = _index(firestore_db, settings)
    # Same records, other order (files, not _id): the same groups and keys hold the same patients.
    expected, _ = _expected(settings, fhir)
    assert {k for k in index if k[0] != "review_items"} == {k for k in expected if k[0] != "review_items"}
    assert progress.requests_published == len(topics.pull("merge-requests", count=progress.requests_published,
                                                           timeout=30.0, max_messages=5000))
    assert FhirPatientScan(fhir, page_size=200).parallel is False  # nothing scanned the server above


def test_with_splink_scores_first_the_run_leaves_the_same_index(settings, fhir, firestore_db, topics, district,
                                                                tmp_path):
    # The FHIR read is spooled, scored by Splink on DuckDB, then decided in parts with the scores asked first.
    progress = batch_backfill(settings, work_dir=tmp_path / "work", engine="duckdb").run("scored")
    assert progress.status == "done" and progress.patients == PATIENTS and "score" in progress.phase_seconds
    expected, request_ids = _expected(settings, fhir)
    assert _index(firestore_db, settings) == expected
    published = topics.pull("merge-requests", count=len(request_ids), timeout=30.0, max_messages=len(request_ids) + 50)
    assert sorted(m["request_id"] for m in published) == sorted(request_ids)
    scoring, clusters = progress.counts["scoring"], progress.counts["clusters"]
    assert scoring["engine"] == "duckdb" and scoring["pairs"] > 1000
    assert scoring["lookups"]["scored_by_engine"] > 100 and scoring["lookups"]["scored_by_model"] == 0
    assert clusters["clusters"] == scoring["clusters"] == clusters["kept_whole"] + clusters["split_by_rules"] > 100
    assert (tmp_path / "work" / "scores" / "pairs.parquet").exists()


def test_the_fhir_scan_reads_pages_in_parallel_and_every_patient_once(fhir, district):
    scan = FhirPatientScan(fhir, page_size=200, workers=4)
    ids = [p["id"] for page in scan.pages() for p in page]
    assert scan.parallel and len(ids) == len(set(ids)) == PATIENTS
    assert ids == sorted(ids)


def test_a_run_killed_while_deciding_and_writing_decided_parts_resumes_to_the_same_end_state(
        settings, fhir, firestore_db, topics, district, tmp_path):
    """Each part's groups are written while the other parts are decided: a run killed then decides again
    on the index as it first read it (not on its own writes) and recognises the groups it wrote. The retry
    runs on an empty disk (a Cloud Run task's): the Patients it read from the FHIR server come back from
    the keep directory, not from the server as it is now."""
    work = tmp_path / "work"
    args = ["--run-id", "killed-deciding", "--work-dir", str(work), "--keep-dir", str(tmp_path / "keep"),
            "--write-workers", "1", "--page-size", "300"]
    run = _ops(settings, *args)
    runs = firestore_db.collection(settings.collection("backfill_runs"))
    groups = firestore_db.collection(settings.collection("demographic_index"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None and not list(groups.limit(1).stream()):
        time.sleep(0.02)  # until the first decided part's groups are in
    assert run.poll() is None, run.stdout.read()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    killed = runs.document("killed-deciding").get().to_dict()
    assert killed["phase"] == "decide", "killed while deciding"
    partial = _index(firestore_db, settings)
    assert any(c in ("nik_index", "demographic_index") for c, _ in partial)
    assert not any(c in ("patient_keys", "review_items") for c, _ in partial)
    assert topics.pull("merge-requests", count=None, timeout=1.0) == []

    shutil.rmtree(work)
    resumed = _ops(settings, *args)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    done = runs.document("killed-deciding").get().to_dict()
    assert done["status"] == "done" and done["create_only"]
    assert done["stamp"] == killed["stamp"]   # decided at the first attempt's time: the same documents
    assert done["counts"]["writes:groups"].get("same", 0) > 0       # its own writes, recognised
    assert "conflict" not in done["counts"]["writes:groups"] and done["conflicted_groups"] == []
    assert "stale" not in done["results"]   # decided as the first attempt was, not as replays of its writes
    expected, request_ids = _expected(settings, fhir)
    assert _index(firestore_db, settings) == expected
    published = topics.pull("merge-requests", count=len(request_ids), timeout=30.0, max_messages=len(request_ids) + 50)
    assert sorted(m["request_id"] for m in published) == sorted(request_ids)   # each once
