# --- the district's matching model: its bucket and the scheduled retraining (docs/operations.md) ------

# The model store (shared/adapters/model_store_gcs.py; DEDUP_MODEL_STORE = gs://<bucket>, in local.settings):
# versions/<version>.json, written once, and current.json, the pointer a promote moves. Object versioning
# keeps every generation (the pointer's promotion history too) and no lifecycle rule deletes any: a
# model version is never overwritten nor deleted. Encrypted with a key of the district's key ring.

variable "model_retrain_schedule" {
  description = "Cron schedule (var.time_zone) of the retraining job: `dedup model train` on the district's Patients. A new version is stored and reported, never promoted unless model_retrain_promote."
  type        = string
  default     = "0 2 * * 0" # Sundays 02:00
}

variable "model_retrain_promote" {
  description = "Let the scheduled retraining promote its model at once (--promote). Default false: retrain, report, a person reads the comparison and runs `dedup model promote VERSION`."
  type        = bool
  default     = false
}

variable "model_train_timeout_seconds" {
  description = "Longest a retraining run may take (reading every Patient dominates on a large district)."
  type        = number
  default     = 3600
}

variable "model_train_cpu" {
  type    = number
  default = 2
}

variable "model_train_memory" {
  description = "Memory of the retraining job: the district's index records and DuckDB (100,000 patients: ~1 GiB)."
  type        = string
  default     = "4Gi"
}

locals {
  model_bucket = "${var.project_id}-dedup-models"
  # Functions that decide with the model (their entry points build the matching service through
  # shared/bootstrap.py; tests/infra/test_model_training_job.py derives this set from the code).
  model_readers = toset(["match-patient", "force-merge", "patient-merge"])
  # The retraining's command: the ops CLI's `model train` (ops/model.py), by the job's name.
  model_train_command = concat(
    ["python", "-m", "ops", "model", "train", "--by", "scheduled-retraining"],
    var.patient_export_bucket == null ? [] : ["--ndjson", local.export_mount],
    var.model_retrain_promote ? ["--promote"] : [],
  )
}

resource "google_kms_crypto_key" "models" {
  name            = "dedup-models"
  key_ring        = google_kms_key_ring.pubsub.id
  rotation_period = "7776000s" # 90 days; old versions stay to decrypt the models written under them
  labels          = local.labels
  lifecycle {
    prevent_destroy = true
  }
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

resource "google_kms_crypto_key_iam_member" "models_storage_agent" {
  crypto_key_id = google_kms_crypto_key.models.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62:Holds the matching models (m/u weights and the 200 most frequent normalised names, no record of a patient); Data Access logs of the project cover reads, and access logs would need a second bucket per district.
  project                     = var.project_id
  name                        = local.model_bucket
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = google_kms_crypto_key.models.id
  }
  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.models_storage_agent]
}

# Everything that decides reads the current model: the functions that match, the batch backfill, the
# review workbench (its approvals go through the matching service).
resource "google_storage_bucket_iam_member" "function_reads_models" {
  for_each = local.model_readers
  bucket   = google_storage_bucket.models.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${module.function[each.key].service_account_email}"
}

resource "google_storage_bucket_iam_member" "backfill_reads_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.backfill.member
}

resource "google_storage_bucket_iam_member" "workbench_reads_models" {
  count  = var.workbench_image == null ? 0 : 1
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${one(module.workbench[*].service_account)}"
}

# --- the retraining job ------------------------------------------------------------------------------

# A Cloud Run Job on the ops image (var.backfill_image: infra/backfill.Dockerfile) started by Cloud
# Scheduler. Its account reads the district's Patients (the FHIR store, or the export bucket) and the NIK
# key (index records carry keyed tokens), reads the model bucket (the current model, to compare) and may
# only create objects there: objectCreator cannot overwrite or delete, so the job adds versions and
# never moves the pointer, unless model_retrain_promote grants it the pointer object alone.
resource "google_service_account" "model_training" {
  project      = var.project_id
  account_id   = "dedup-model-training"
  display_name = "dedup model retraining job runtime"
  description  = "Runs `dedup model train` on a schedule; roles are granted on single resources only."
}

resource "google_storage_bucket_iam_member" "training_adds_models" {
  for_each = toset(["roles/storage.objectCreator", "roles/storage.objectViewer"])
  bucket   = google_storage_bucket.models.name
  role     = each.value
  member   = google_service_account.model_training.member
}

resource "google_storage_bucket_iam_member" "training_promotes" {
  count  = var.model_retrain_promote ? 1 : 0
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectUser"
  member = google_service_account.model_training.member
  condition {
    title       = "dedup-model-pointer-only"
    description = "Only the pointer to the current model (a promote replaces it)."
    expression  = "resource.name == \"projects/_/buckets/${local.model_bucket}/objects/current.json\""
  }
}

resource "google_healthcare_fhir_store_iam_member" "training_reads_fhir" {
  count         = local.uses_healthcare_api && var.patient_export_bucket == null ? 1 : 0
  fhir_store_id = local.fhir_store_id
  role          = local.reader
  member        = google_service_account.model_training.member
}

resource "google_storage_bucket_iam_member" "training_reads_export" {
  count  = var.patient_export_bucket == null ? 0 : 1
  bucket = var.patient_export_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.model_training.member
}

resource "google_secret_manager_secret_iam_member" "training_secret" {
  for_each  = merge(local.nik_key_env, local.fhir_token_env)
  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.model_training.member
}

module "model_training_job" {
  source = "../ops_job"
  count  = var.backfill_image == null ? 0 : 1

  project_id            = var.project_id
  region                = var.region
  name                  = "dedup-model-training"
  labels                = local.labels
  service_account_email = google_service_account.model_training.email
  image                 = var.backfill_image
  command               = local.model_train_command
  timeout_seconds       = var.model_train_timeout_seconds
  max_retries           = 1 # a new run only adds another version: safe to retry
  cpu                   = var.model_train_cpu
  memory                = var.model_train_memory
  environment           = local.settings
  secret_environment    = merge(local.nik_key_env, local.fhir_token_env)
  buckets               = local.export_volumes
  vpc_connector         = var.vpc_connector

  depends_on = [google_project_service.enabled, google_secret_manager_secret_iam_member.training_secret,
  google_storage_bucket_iam_member.training_adds_models]
}

moved {
  from = google_cloud_run_v2_job.model_training[0]
  to   = module.model_training_job[0].google_cloud_run_v2_job.job
}

# Cloud Scheduler starts the job (the Cloud Run Admin API's jobs.run) as its own account, which may run
# this job and nothing else.
resource "google_service_account" "model_scheduler" {
  project      = var.project_id
  account_id   = "dedup-model-scheduler"
  display_name = "dedup retraining scheduler"
  description  = "Starts the model retraining job on var.model_retrain_schedule."
}

resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_training" {
  count    = var.backfill_image == null ? 0 : 1
  project  = var.project_id
  location = var.region
  name     = module.model_training_job[0].name
  role     = "roles/run.invoker"
  member   = google_service_account.model_scheduler.member
}

resource "google_cloud_scheduler_job" "model_retraining" {
  count     = var.backfill_image == null ? 0 : 1
  project   = var.project_id
  region    = var.region
  name      = "dedup-model-retraining"
  schedule  = var.model_retrain_schedule
  time_zone = var.time_zone
  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${module.model_training_job[0].name}:run"
    oauth_token {
      service_account_email = google_service_account.model_scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.enabled, google_cloud_run_v2_job_iam_member.scheduler_runs_training]
}

output "model_bucket" {
  description = "The district's model store: DEDUP_MODEL_STORE=gs://<this> for `dedup model list|promote` from an operator's machine."
  value       = google_storage_bucket.models.name
}
