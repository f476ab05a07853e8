"""The batch backfill's Cloud Run Job and the code it runs, held together: the command is the ops CLI's
backfill with options that exist, the job gets the functions' settings and the NIK key from Secret
Manager (pinned), and its own service account holds what the code touches and nothing more."""

from __future__ import annotations

import inspect

from ops.cli import backfill


def _job(modules) -> str:
    return str(modules["district"].resources_of("google_cloud_run_v2_job")["backfill"])


def test_the_job_runs_the_ops_backfill_with_options_it_has(modules):
    job = _job(modules)
    assert "'python', '-m', 'ops', 'backfill'" in job
    options = inspect.signature(backfill).parameters
    assert "'--work-dir'" in job and "work_dir" in options
    # One deciding process per vCPU of the task (the container shows the host's CPU count).
    assert "'--decide-workers', '${tostring(var.backfill_cpu)}'" in job and "decide_workers" in options
    assert "max_retries': 0" in job   # its work files do not survive a retry (batch_backfill.WorkDirLost)


def test_the_jobs_engine_is_one_the_cli_takes_and_its_default_the_clis(modules):
    from ops.cli import BACKFILL_ENGINE_DEFAULT, BACKFILL_ENGINES

    assert "'--engine', '${var.backfill_engine}'" in _job(modules)
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
    assert "merge(local.nik_key_env, local.fhir_token_env)" in job
    assert "env.value.version" in job


def test_the_jobs_account_holds_only_what_the_backfill_touches(modules):
    district = modules["district"]
    assert str(district.resources_of("google_cloud_run_v2_job")["backfill"]).count(
        "google_service_account.backfill.email") == 1
    grants = {name: body for type_, named in district.resources.items() for name, body in named.items()
              if "google_service_account.backfill.member" in str(body)}
    assert set(grants) == {"backfill_publishes_merge_requests", "backfill_reads_fhir", "backfill_firestore",
                           "backfill_secret", "backfill_reads_models"}   # it decides with the current model
    assert 'pipeline["merge_requests"]' in str(grants["backfill_publishes_merge_requests"])
    assert "local.reader" in str(grants["backfill_reads_fhir"])
    firestore = str(grants["backfill_firestore"])
    assert "roles/datastore.user" in firestore and "condition" in firestore
