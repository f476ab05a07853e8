"""The district's two Cloud Run Jobs on the ops image (the batch backfill and the model retraining) are
one module, ``infra/modules/ops_job``: it passes on every input it takes, mounts each bucket read-only or
not as the caller says, and reads secrets at the caller's pinned versions. Both jobs mount the patient
export through one definition, ``local.export_volumes``: read-only at ``local.export_mount``, where both
commands read ``--ndjson``, and no volume at all without a bucket."""

from __future__ import annotations

import re

JOBS = {"backfill_job": "google_service_account.backfill",
        "model_training_job": "google_service_account.model_training"}


def _job_resource(modules) -> str:
    return str(modules["ops_job"].resources_of("google_cloud_run_v2_job")["job"])


def test_the_module_passes_on_every_input_it_takes(modules):
    job, variables = _job_resource(modules), modules["ops_job"].variables
    assert {name for name in variables if f"var.{name}" not in job} == set()
    # A bucket's volume and its mount iterate the same list: read_only and the mount path come from it.
    assert job.count("'for_each': '${var.buckets}'") == 2
    assert "'read_only': '${volumes.value.read_only}'" in job
    assert "'mount_path': '${volume_mounts.value.mount_path}'" in job
    assert "'version': '${env.value.version}'" in job and "latest" not in job   # pinned secret versions
    assert "'service_account': '${var.service_account_email}'" in job


def test_both_jobs_are_the_module_run_as_their_own_account(modules):
    district = modules["district"]
    assert district.resources_of("google_cloud_run_v2_job") == {}   # no job written out a second time
    for name, account in JOBS.items():
        job = district.modules[name]
        assert job["source"] == "../ops_job" and job["count"] == "${var.backfill_image == null ? 0 : 1}"
        assert job["service_account_email"] == "${" + account + ".email}"
        assert job["image"] == "${var.backfill_image}"
        assert "local.settings" in job["environment"]
        assert job["secret_environment"] == "${merge(local.nik_key_env, local.fhir_token_env)}"
        assert job["vpc_connector"] == "${var.vpc_connector}"


def test_both_jobs_mount_the_one_export_volume_read_only(modules):
    district = modules["district"]
    volumes = district.locals["export_volumes"]
    assert volumes.startswith("${var.patient_export_bucket == null ? [] : [")
    assert re.search(r'\{name = "export", bucket = var.patient_export_bucket, mount_path = local.export_mount, '
                     r"read_only = true\}", volumes), volumes
    for name in JOBS:
        assert "local.export_volumes" in district.modules[name]["buckets"], name


def test_existing_jobs_move_into_the_module_instead_of_being_replaced():
    """A district deployed before the jobs shared the module keeps its jobs (and their executions):
    ``moved`` blocks give Terraform the old addresses."""
    from tests.infra.conftest import MODULES_DIR

    source = "".join(path.read_text() for path in (MODULES_DIR / "district").glob("*.tf"))
    for old, name in (("backfill", "backfill_job"), ("model_training", "model_training_job")):
        assert re.search(r"moved \{\s*from = google_cloud_run_v2_job\." + old + r"\[0\]\s*to\s*= module\." + name
                         + r"\[0\]\.google_cloud_run_v2_job\.job\s*\}", source), old
