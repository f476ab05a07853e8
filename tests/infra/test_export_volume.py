"""The patient export bucket reaches both Cloud Run Jobs that read it (the batch backfill and the model
training) through one definition, ``local.export_volumes``: mounted read-only at ``local.export_mount``,
where both commands read ``--ndjson``, and no volume at all without a bucket."""

from __future__ import annotations


def test_both_jobs_mount_the_one_export_volume_read_only(modules):
    district = modules["district"]
    volumes = district.locals["export_volumes"]
    assert volumes.startswith("${var.patient_export_bucket == null ? [] : [")
    assert "bucket" in volumes and "var.patient_export_bucket" in volumes
    jobs = district.resources_of("google_cloud_run_v2_job")
    for name in ("backfill", "model_training"):
        job = str(jobs[name])
        assert job.count("'for_each': '${local.export_volumes}'") == 2, name   # the volume and its mount
        assert "'name': '${volumes.value.name}'" in job and "'name': '${volume_mounts.value.name}'" in job
        assert "'bucket': '${volumes.value.bucket}'" in job and "'read_only': True" in job
        assert "'mount_path': '${local.export_mount}'" in job
        assert "patient_export_bucket == null ? [] : [var.patient_export_bucket]" not in job   # no copy left
