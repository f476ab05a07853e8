# --- batch backfill (python -m ops backfill) ---------------------------------------------------------

# The batch backfill runs as a Cloud Run Job: one task, started by hand (gcloud run jobs execute
# dedup-backfill) when a district starts or after a bulk import. Its image holds the repository with
# the ops dependencies (infra/backfill.Dockerfile), built by the district's pipeline into
# var.backfill_image (no image set: no job). Same settings and secrets as the functions; its own service account, holding
# what it touches: Firestore (the index and backfill_runs), publish on merge-requests, read the FHIR store.
# Checkpoints: backfill_runs/{run id} in Firestore, the work files (read spool, decisions) on the
# task's in-memory disk, which a retry does not get back. So the decisions are also copied, once decided,
# to the keep bucket mounted read-write (--keep-dir, shared/services/batch_keep.py), and the run id is the
# execution's name (the CLI reads CLOUD_RUN_EXECUTION, set by Cloud Run): a retried task resumes its
# execution's run, reading again what it lost before deciding and taking the kept decisions after.
locals {
  backfill_keep_mount  = "/mnt/backfill-keep"
  backfill_keep_bucket = "${var.project_id}-dedup-backfill-keep"
  # Where the jobs mount var.patient_export_bucket (Cloud Storage FUSE, read-only).
  export_mount = "/mnt/export"
  # The export volume of the backfill and training jobs (none without a bucket): one definition, in
  # both jobs' list of mounted buckets (../ops_job), read-only.
  export_volumes = var.patient_export_bucket == null ? [] : [
    { name = "export", bucket = var.patient_export_bucket, mount_path = local.export_mount, read_only = true },
  ]
  # The backfill copies a mounted export into its work directory first (--copy-first): FUSE reads in
  # sequence fast, but pays a request for each patient read back by its place while deciding.
  backfill_command = concat(
    ["python", "-m", "ops", "backfill", "--work-dir", "/tmp/backfill", "--keep-dir", local.backfill_keep_mount,
    "--decide-workers", tostring(var.backfill_cpu), "--engine", var.backfill_engine],
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

# The kept decisions: index documents of the whole store (keyed tokens and the records matching
# compares), so the bucket is encrypted with the district's key ring like the models, private, and
# emptied by its lifecycle rule a few days after a run.
resource "google_kms_crypto_key" "backfill_keep" {
  name            = "dedup-backfill-keep"
  key_ring        = google_kms_key_ring.pubsub.id
  rotation_period = "7776000s" # 90 days
  labels          = local.labels
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "backfill_keep_storage_agent" {
  crypto_key_id = google_kms_crypto_key.backfill_keep.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_bucket" "backfill_keep" {
  #checkov:skip=CKV_GCP_62:A backfill's working copy of its own decisions, read only by the backfill job; Data Access logs of the project cover reads, and access logs would need a second bucket per district.
  #checkov:skip=CKV_GCP_78:Working copies, replaced when a copy is cut short and deleted by the lifecycle rule: older generations would keep patient index data longer, for nothing.
  project                     = var.project_id
  name                        = local.backfill_keep_bucket
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  encryption {
    default_kms_key_name = google_kms_crypto_key.backfill_keep.id
  }
  lifecycle_rule {
    condition {
      age = var.backfill_keep_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.backfill_keep_storage_agent]
}

# Creates, reads and replaces the copies (a copy cut short is written again); this bucket only.
resource "google_storage_bucket_iam_member" "backfill_keeps_decisions" {
  bucket = google_storage_bucket.backfill_keep.name
  role   = "roles/storage.objectUser"
  member = google_service_account.backfill.member
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

module "backfill_job" {
  source = "../ops_job"
  count  = var.backfill_image == null ? 0 : 1

  project_id            = var.project_id
  region                = var.region
  name                  = "dedup-backfill"
  labels                = local.labels
  service_account_email = google_service_account.backfill.email
  image                 = var.backfill_image
  # One deciding process per vCPU: inside the container the CPU count Python sees is the host's.
  command            = local.backfill_command
  timeout_seconds    = var.backfill_timeout_seconds
  max_retries        = 1 # a retry resumes the execution's run (CLOUD_RUN_EXECUTION, the kept decisions)
  cpu                = var.backfill_cpu
  memory             = var.backfill_memory
  environment        = merge(local.settings, local.backfill_settings)
  secret_environment = merge(local.nik_key_env, local.fhir_token_env)
  buckets = concat(local.export_volumes, [
    { name = "keep", bucket = google_storage_bucket.backfill_keep.name, mount_path = local.backfill_keep_mount, read_only = false },
  ])
  vpc_connector = var.vpc_connector

  depends_on = [google_project_service.enabled, google_secret_manager_secret_iam_member.backfill_secret,
  google_firestore_database.dedup, google_storage_bucket_iam_member.backfill_keeps_decisions]
}

# The job was a resource of this module before the jobs shared ../ops_job.
moved {
  from = google_cloud_run_v2_job.backfill[0]
  to   = module.backfill_job[0].google_cloud_run_v2_job.job
}
