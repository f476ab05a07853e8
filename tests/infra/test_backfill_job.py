"""The batch backfill's Cloud Run Job and the code it runs, held together: the command is the ops CLI's
backfill with options that exist, the job gets the functions' settings and the NIK key from Secret
Manager (pinned), and its own service account holds what the code touches and nothing more."""

from __future__ import annotations

import inspect
import re

import typer

from ops.cli import app, backfill


def _job(modules) -> str:
    return str(modules["district"].modules["backfill_job"])   # the ops_job module's inputs


def _flags() -> set[str]:
    command = typer.main.get_command(app).commands["backfill"]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_the_job_runs_the_ops_backfill_with_options_it_has(modules):
    job = _job(modules)
    assert "'command': '${local.backfill_command}'" in job
    command = modules["district"].locals["backfill_command"]
    assert '["python", "-m", "ops", "backfill", "--work-dir", "/tmp/backfill"' in command
    assert set(re.findall(r'"(--[a-z-]+)"', command)) <= _flags()
    # One deciding process per vCPU of the task (the container shows the host's CPU count).
    assert '"--decide-workers", tostring(var.backfill_cpu)' in command


def test_a_retried_task_resumes_its_executions_run_from_the_kept_decisions(modules):
    """A retry gets a new in-memory disk: it resumes only because the run id is the execution's name and
    the decisions were kept in the bucket it mounts read-write (otherwise: batch_backfill.WorkDirLost)."""
    district = modules["district"]
    job = _job(modules)
    assert "max_retries': 1" in job
    command = district.locals["backfill_command"]
    assert '"--keep-dir", local.backfill_keep_mount' in command and "--run-id" not in command
    run_id = next(p for p in typer.main.get_command(app).commands["backfill"].params if p.name == "run_id")
    assert run_id.envvar == "CLOUD_RUN_EXECUTION"   # what Cloud Run sets, the same on every task attempt
    assert "keep_dir" in inspect.signature(backfill).parameters
    assert ('{name = "keep", bucket = google_storage_bucket.backfill_keep.name, '
            'mount_path = local.backfill_keep_mount, read_only = false}') in job
    bucket = district.resources_of("google_storage_bucket")["backfill_keep"]
    assert bucket["name"] == "${local.backfill_keep_bucket}"
    assert "google_kms_crypto_key.backfill_keep.id" in str(bucket["encryption"])
    assert "var.backfill_keep_days" in str(bucket["lifecycle_rule"]) and "Delete" in str(bucket["lifecycle_rule"])


def test_a_mounted_export_is_read_read_only_and_copied_first(modules):
    """The export bucket reaches the job through Cloud Storage FUSE: read-only, and copied into the
    work directory in one sequential read before deciding reads patients back by place."""
    command = modules["district"].locals["backfill_command"]
    assert 'var.patient_export_bucket == null ? [] : ["--ndjson", local.export_mount, "--copy-first"]' in command
    assert "copy_first" in inspect.signature(backfill).parameters
    assert "local.export_volumes" in _job(modules)   # read-only at local.export_mount (test_ops_jobs.py)
    writer = modules["district"].resources_of("google_storage_bucket_iam_member")["healthcare_exports_patients"]
    assert "gcp-sa-healthcare" in writer["member"] and writer["bucket"] == "${var.patient_export_bucket}"
    assert writer["role"] == "roles/storage.objectCreator"   # writes an export, never replaces one


def test_the_jobs_engine_is_one_the_cli_takes_and_its_default_the_clis(modules):
    from ops.cli import BACKFILL_ENGINE_DEFAULT, BACKFILL_ENGINES

    assert '"--engine", var.backfill_engine' in modules["district"].locals["backfill_command"]
    assert "engine" in inspect.signature(backfill).parameters
    variable = modules["district"].variables["backfill_engine"]
    assert variable["default"] == BACKFILL_ENGINE_DEFAULT
    allowed = str(variable["validation"])
    offered = [engine for engine in BACKFILL_ENGINES if f'"{engine}"' in allowed]
    # Every engine the CLI has but spark (Java, absent from the job's image: the Dataproc module runs it).
    assert sorted(offered) == sorted(set(BACKFILL_ENGINES) - {"spark"}), allowed


def test_the_job_gets_the_functions_settings_and_pinned_secrets(modules):
    job = _job(modules)
    assert "local.settings" in job
    assert "merge(local.nik_key_env, local.fhir_token_env)" in job   # at pinned versions (test_ops_jobs.py)


def test_the_jobs_account_holds_only_what_the_backfill_touches(modules):
    district = modules["district"]
    assert _job(modules).count("google_service_account.backfill.email") == 1
    grants = {name: body for type_, named in district.resources.items() for name, body in named.items()
              if "google_service_account.backfill.member" in str(body)}
    assert set(grants) == {"backfill_publishes_merge_requests", "backfill_reads_fhir", "backfill_firestore",
                           "backfill_secret", "backfill_reads_models",   # it decides with the current model
                           "backfill_reads_export", "backfill_keeps_decisions"}
    assert grants["backfill_reads_export"]["role"] == "roles/storage.objectViewer"
    keeps = grants["backfill_keeps_decisions"]
    assert keeps["role"] == "roles/storage.objectUser"
    assert keeps["bucket"] == "${google_storage_bucket.backfill_keep.name}"
    assert 'pipeline["merge_requests"]' in str(grants["backfill_publishes_merge_requests"])
    assert "local.reader" in str(grants["backfill_reads_fhir"])
    firestore = str(grants["backfill_firestore"])
    assert "roles/datastore.user" in firestore and "condition" in firestore


def test_the_jobs_duckdb_is_bounded_as_the_code_reads_it(modules):
    """DuckDB's memory limit and spill directory reach the job as the settings the code reads, the limit
    in the form both DuckDB and the settings' validation take, the spill inside the job's work directory."""
    from shared.config import DUCKDB_MEMORY_LIMIT, Settings

    district = modules["district"]
    assert "merge(local.settings, local.backfill_settings)" in _job(modules)
    env = district.locals["backfill_settings"]
    assert set(env) == {"DEDUP_DUCKDB_MEMORY_LIMIT", "DEDUP_DUCKDB_TEMP_DIRECTORY"}
    assert {f"DEDUP_{name.upper()}" for name in ("duckdb_memory_limit", "duckdb_temp_directory")} <= set(env)
    assert set(Settings.model_fields) >= {"duckdb_memory_limit", "duckdb_temp_directory"}
    assert env["DEDUP_DUCKDB_MEMORY_LIMIT"] == "${var.backfill_duckdb_memory_limit}"
    assert env["DEDUP_DUCKDB_TEMP_DIRECTORY"].startswith("/tmp/backfill/")     # the command's --work-dir
    variable = district.variables["backfill_duckdb_memory_limit"]
    assert variable["default"] == Settings.model_fields["duckdb_memory_limit"].default
    condition = variable["validation"][0]["condition"]    # HCL source: a backslash is written twice
    hcl = DUCKDB_MEMORY_LIMIT.replace(chr(92), chr(92) * 2)
    assert f'regex("{hcl}", var.backfill_duckdb_memory_limit)' in condition
    assert re.match(DUCKDB_MEMORY_LIMIT, "1.5GiB") and not re.match(DUCKDB_MEMORY_LIMIT, "80%")
