# --- batch backfill (python -m ops backfill) ---------------------------------------------------------

# The batch backfill runs as a Cloud Run Job: one task, started by hand (gcloud run jobs execute
# dedup-backfill) when a district starts or after a bulk import. Its image holds the repository with
# the ops dependencies (infra/backfill.Dockerfile), built by the district's pipeline into
# var.backfill_image (no image set: no job). Same settings and secrets as the functions; its own service account, holding
# what it touches: Firestore (the index and backfill_runs), publish on merge-requests, read the FHIR store.
# Checkpoints: backfill_runs/{run id} in Firestore, the work files (read spool, decisions) on the
# task's in-memory disk, which a retry does not get back: no automatic retry (a run that died after
# deciding refuses to resume without them, shared/services/batch_backfill.py); execute the job again
# (a new run reads the index as it is then).
locals {
  # Where the jobs mount var.patient_export_bucket (Cloud Storage FUSE, read-only).
  export_mount = "/mnt/export"
  # The export volume of the backfill and training jobs (none without a bucket): one definition, each
  # job's volume and mount blocks iterate over it (Terraform cannot share a nested block itself).
  export_volumes = var.patient_export_bucket == null ? [] : [{ name = "export", bucket = var.patient_export_bucket }]
  # The backfill copies a mounted export into its work directory first (--copy-first): FUSE reads in
  # sequence fast, but pays a request for each patient read back by its place while deciding.
  backfill_command = concat(
    ["python", "-m", "ops", "backfill", "--work-dir", "/tmp/backfill", "--decide-workers", tostring(var.backfill_cpu),
    "--engine", var.backfill_engine],
    var.patient_export_bucket == null ? [] : ["--ndjson", local.export_mount, "--copy-first"],
  )
  # DuckDB's bound with --engine duckdb (shared/config.py duckdb_memory_limit, duckdb_temp_directory):
  # without it DuckDB takes up to 80 % of the task's memory, which the deciding workers need. Its spill
  # directory is in the work directory, on the task's in-memory disk: var.backfill_memory covers both.
  backfill_settings = {
    DEDUP_DUCKDB_MEMORY_LIMIT   = var.backfill_duckdb_memory_limit
    DEDUP_DUCKDB_TEMP_DIRECTORY = "/tmp/backfill/duckdb-spill"
  }
}

resource "google_service_account" "backfill" {
  project      = var.project_id
  account_id   = "dedup-backfill"
  display_name = "dedup backfill job runtime"
  description  = "Runs the batch backfill Cloud Run Job; roles are granted on single resources only."
}

resource "google_pubsub_topic_iam_member" "backfill_publishes_merge_requests" {
  project = var.project_id
  topic   = google_pubsub_topic.pipeline["merge_requests"].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.backfill.member
}

resource "google_storage_bucket_iam_member" "backfill_reads_export" {
  count  = var.patient_export_bucket == null ? 0 : 1
  bucket = var.patient_export_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.backfill.member
}

# fhirStores.export writes into the bucket as the Healthcare service agent: new objects only (no
# delete, so no overwrite): empty the bucket before the next export (docs/operations.md).
resource "google_storage_bucket_iam_member" "healthcare_exports_patients" {
  count  = local.uses_healthcare_api && var.patient_export_bucket != null ? 1 : 0
  bucket = var.patient_export_bucket
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"
}

resource "google_healthcare_fhir_store_iam_member" "backfill_reads_fhir" {
  count         = local.uses_healthcare_api ? 1 : 0
  fhir_store_id = local.fhir_store_id
  role          = local.reader
  member        = google_service_account.backfill.member
}

resource "google_project_iam_member" "backfill_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.backfill.member
  condition {
    title       = "dedup-database-only"
    description = "Only the deduplication database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

resource "google_secret_manager_secret_iam_member" "backfill_secret" {
  for_each  = merge(local.nik_key_env, local.fhir_token_env)
  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.backfill.member
}

resource "google_cloud_run_v2_job" "backfill" {
  count               = var.backfill_image == null ? 0 : 1
  project             = var.project_id
  name                = "dedup-backfill"
  location            = var.region
  labels              = local.labels
  deletion_protection = false

  template {
    task_count  = 1
    parallelism = 1
    template {
      service_account = google_service_account.backfill.email
      timeout         = "${var.backfill_timeout_seconds}s"
      max_retries     = 0
      containers {
        image = var.backfill_image
        # One deciding process per vCPU: inside the container the CPU count Python sees is the host's.
        command = local.backfill_command
        resources {
          limits = { cpu = tostring(var.backfill_cpu), memory = var.backfill_memory }
        }
        dynamic "env" {
          for_each = merge(local.settings, local.backfill_settings)
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = merge(local.nik_key_env, local.fhir_token_env)
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }
        dynamic "volume_mounts" {
          for_each = local.export_volumes
          content {
            name       = volume_mounts.value.name
            mount_path = local.export_mount
          }
        }
      }
      dynamic "volumes" {
        for_each = local.export_volumes
        content {
          name = volumes.value.name
          gcs {
            bucket    = volumes.value.bucket
            read_only = true
          }
        }
      }
      dynamic "vpc_access" {
        for_each = var.vpc_connector == null ? [] : [var.vpc_connector]
        content {
          connector = vpc_access.value
          egress    = "PRIVATE_RANGES_ONLY"
        }
      }
    }
  }

  depends_on = [google_project_service.enabled, google_secret_manager_secret_iam_member.backfill_secret,
  google_firestore_database.dedup]
}
