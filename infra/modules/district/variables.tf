# Everything one district needs. An environment folder under infra/envs/ calls this module once.

variable "project_id" {
  description = "The district's own Google Cloud project."
  type        = string
}

variable "district" {
  description = "Short district name used in labels and alert titles, e.g. kota-yogyakarta."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,39}$", var.district))
    error_message = "Use lower-case letters, digits and hyphens."
  }
}

variable "region" {
  description = "Region of the functions, Pub/Sub push endpoints and Firestore (Jakarta by default)."
  type        = string
  default     = "asia-southeast2"
}

# --- FHIR server -----------------------------------------------------------------------------------

variable "fhir_mode" {
  description = <<-EOT
    create: a new Healthcare API dataset and FHIR R4 store publishing to patient-changes.
    existing-healthcare: a Healthcare API store that already exists (existing_fhir_store_id); its
      notification config is pointed at patient-changes by hand (README), Terraform grants the IAM.
    external: another FHIR server (HAPI, ...) whose rest-hook Subscription calls subscription-relay.
  EOT
  type        = string
  default     = "create"
  validation {
    condition     = contains(["create", "existing-healthcare", "external"], var.fhir_mode)
    error_message = "fhir_mode is create, existing-healthcare or external."
  }
}

variable "healthcare_location" {
  description = "Healthcare API location; defaults to region."
  type        = string
  default     = null
}

variable "fhir_dataset" {
  type    = string
  default = "dedup"
}

variable "fhir_store" {
  type    = string
  default = "patients"
}

variable "existing_fhir_store_id" {
  description = "projects/P/locations/L/datasets/D/fhirStores/S, for fhir_mode = existing-healthcare."
  type        = string
  default     = null
}

variable "external_fhir_base_url" {
  description = "Base URL of the FHIR server, for fhir_mode = external."
  type        = string
  default     = null
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector id when the FHIR server is on private addresses (external mode)."
  type        = string
  default     = null
}

variable "external_fhir_token_secret" {
  description = "Secret Manager secret id holding the bearer token for the external FHIR server (null: no auth)."
  type        = string
  default     = null
}

# --- district conventions and matching thresholds (shared/config.py) -------------------------------

variable "nik_system" {
  type    = string
  default = "https://fhir.kemkes.go.id/id/nik"
}

variable "nik_ibu_system" {
  type    = string
  default = "https://fhir.kemkes.go.id/id/nik-ibu"
}

variable "golden_tag_system" {
  type    = string
  default = "http://terminology.kemkes.go.id/sp-replaced-by"
}

variable "source_priority" {
  description = "Legacy systems in order of preference as master (DEDUP_SOURCE_PRIORITY)."
  type        = list(string)
  default     = ["simrs", "simpus", "sikda", "pcare", "lab"]
}

# Thresholds: null (the default) leaves the code's calibrated value (shared/config.py, CALIBRATED_*),
# the one source of truth; the functions refuse a value under its floor unless
# allow_thresholds_below_calibration is set (README "Deploying a district").
variable "name_match_threshold" {
  description = "DEDUP_NAME_MATCH_THRESHOLD; null = the calibrated default (97)."
  type        = number
  default     = null
}

variable "name_review_threshold" {
  description = "DEDUP_NAME_REVIEW_THRESHOLD; null = the calibrated default (70)."
  type        = number
  default     = null
}

variable "nik_name_match_threshold" {
  description = "DEDUP_NIK_NAME_MATCH_THRESHOLD; null = the calibrated default (85)."
  type        = number
  default     = null
}

variable "demographic_auto_merge_threshold" {
  description = "DEDUP_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD; null = the calibrated default (97)."
  type        = number
  default     = null
}

variable "model_merge_weight" {
  description = "DEDUP_MODEL_MERGE_WEIGHT (the matching model's auto-merge evidence weight); null = the calibrated default (20)."
  type        = number
  default     = null
}

variable "allow_thresholds_below_calibration" {
  description = "Lets a threshold under its calibrated floor start (logged as a warning); only after calibrating on the district's own labelled pairs."
  type        = bool
  default     = false
}

variable "demographic_auto_merge_enabled" {
  type    = bool
  default = true
}

variable "extra_settings" {
  description = "Further DEDUP_* settings for every function (names from shared/config.py)."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.extra_settings) : startswith(k, "DEDUP_")])
    error_message = "Settings are named DEDUP_<FIELD>."
  }
}

# --- storage and secrets -----------------------------------------------------------------------------

variable "firestore_database" {
  type    = string
  default = "(default)"
}

variable "create_firestore_database" {
  description = "False when the project's Firestore database already exists."
  type        = bool
  default     = true
}

variable "nik_hash_key_secret" {
  description = "Secret Manager secret id of the NIK HMAC key. Terraform creates the secret, never its value."
  type        = string
  default     = "dedup-nik-hash-key"
}

variable "secret_versions" {
  description = <<-EOT
    The version each function reads of each secret (never latest: a new version then reaches the
    functions only through a reviewed plan). Keys: nik_hash_key, external_fhir_token, relay_shared_secret,
    workbench_session_key.
  EOT
  type = object({
    nik_hash_key          = optional(string, "1")
    external_fhir_token   = optional(string, "1")
    relay_shared_secret   = optional(string, "1")
    workbench_session_key = optional(string, "1")
  })
  default = {}
  validation {
    condition     = alltrue([for v in values(var.secret_versions) : can(regex("^[1-9][0-9]*$", v))])
    error_message = "Secret versions are numbers; latest is not allowed."
  }
}

variable "source_bucket" {
  description = "Bucket for the functions' source zips; defaults to <project>-dedup-source."
  type        = string
  default     = null
}

variable "source_object" {
  description = "Object name of the source zip uploaded by Cloud Build (infra/package_source.py)."
  type        = string
}

# --- access, scaling, alerting -----------------------------------------------------------------------

variable "relay_ingress" {
  description = "Ingress of subscription-relay: ALLOW_INTERNAL_ONLY (FHIR server in the project's VPC) or ALLOW_INTERNAL_AND_GCLB (behind a load balancer)."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"
}

variable "relay_allowed_callers" {
  description = "Service account emails whose Google ID tokens (audience: the relay's URL, output relay_audience) the relay accepts, e.g. the HAPI host's."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.relay_allowed_callers : can(regex("^[^@:\\s]+@[^@\\s]+$", e))])
    error_message = "Emails only (no serviceAccount: prefix)."
  }
}

variable "relay_shared_secret" {
  description = "Secret Manager secret id holding the relay's shared secret, for a FHIR server that cannot send ID tokens (null: none)."
  type        = string
  default     = null
}

variable "relay_rejections_per_5m" {
  description = "Rejected relay calls (401) within 5 minutes that raise an alert; 0 = any."
  type        = number
  default     = 0
}

variable "function_limits" {
  description = "Per-function overrides of max_instances and concurrency (defaults in main.tf, with reasons)."
  type        = map(object({ max_instances = number, concurrency = number }))
  default     = {}
}

variable "alert_emails" {
  type    = list(string)
  default = []
}

variable "error_threshold_per_5m" {
  type    = number
  default = 10
}

variable "message_retention" {
  description = "How long the pipeline topics and subscriptions keep messages, dead letters included (they may hold patient resources: kept short, encrypted with the district's key)."
  type        = string
  default     = "345600s"
}

variable "max_delivery_attempts" {
  description = "Deliveries of one message before it is dead-lettered."
  type        = number
  default     = 10
}

variable "reconcile_schedule" {
  description = "Cron schedule of the daily reconcile (late references, by search parameters)."
  type        = string
  default     = "30 2 * * *"
}

variable "reconcile_full_schedule" {
  description = "Cron schedule of the weekly full reconcile (reads every resource)."
  type        = string
  default     = "0 3 * * 0"
}

variable "time_zone" {
  description = "Time zone of the schedules (WIB for most districts; WITA/WIT where it applies)."
  type        = string
  default     = "Asia/Jakarta"
}

variable "sweep_schedule" {
  description = "Cron schedule of the sweeper (merge work stuck past stuck_after_seconds)."
  type        = string
  default     = "*/15 * * * *"
}

variable "stuck_after_seconds" {
  description = "A merge request or job with no progress for this long is stuck (DEDUP_STUCK_AFTER_SECONDS): the sweeper republishes it."
  type        = number
  default     = 1800
  validation {
    condition     = var.stuck_after_seconds >= 600
    error_message = "stuck_after_seconds below 10 minutes would republish merges that are still working (a worker may run 9 minutes)."
  }
}

variable "stuck_republish_limit" {
  description = "Republishes of one stuck request or job before the sweeper fails it (DEDUP_STUCK_REPUBLISH_LIMIT)."
  type        = number
  default     = 3
}

variable "patient_export_bucket" {
  description = "A bucket holding the district's Patients as NDJSON (a fhirStores.export or Bulk Data export, one export in it): the retraining and backfill jobs mount it read-only at local.export_mount and read it (--ndjson) instead of the FHIR store. null: they read the FHIR store."
  type        = string
  default     = null
}

variable "backfill_image" {
  description = "Container image of the batch backfill job (infra/backfill.Dockerfile: the repository with the ops dependencies)."
  type        = string
  default     = null
}

variable "backfill_cpu" {
  description = "vCPUs of the backfill job's task (deciding is one process; writing and publishing use threads)."
  type        = number
  default     = 2
}

variable "backfill_engine" {
  description = "The backfill job's --engine: none (the model scores each pair as it is decided; the CLI's default, the faster on one machine) or duckdb (Splink scores and clusters every candidate pair in process first: the summary's clusters). spark needs Java, which the job's image has not: infra/modules/backfill_spark."
  type        = string
  default     = "none"
  validation {
    condition     = contains(["none", "duckdb"], var.backfill_engine)
    error_message = "backfill_engine: none or duckdb (spark runs as a Dataproc batch, infra/modules/backfill_spark)."
  }
}

variable "backfill_duckdb_memory_limit" {
  description = "DuckDB's memory limit in the backfill job with --engine duckdb (DEDUP_DUCKDB_MEMORY_LIMIT; DuckDB's own default is 80 % of the task's memory): past it, the score phase spills to the work directory. Keep it well under backfill_memory."
  type        = string
  default     = "2GB"
  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", var.backfill_duckdb_memory_limit))
    error_message = "backfill_duckdb_memory_limit: a size DuckDB reads, such as 2GB or 1500MiB."
  }
}

variable "backfill_memory" {
  description = "Memory of the backfill job's task: the decided index of the whole store is held in memory (README \"Batch backfill\": peak 0.9 GiB at 100,000 patients measured locally; 8 GiB leaves room for about 800,000)."
  type        = string
  default     = "8Gi"
}

variable "backfill_keep_days" {
  description = "Days the backfill's kept decisions (the copy a retried task resumes from) stay in their bucket before the lifecycle rule deletes them."
  type        = number
  default     = 7
}

variable "backfill_timeout_seconds" {
  description = "Longest run of one backfill task (a resumed retry continues from the checkpoint)."
  type        = number
  default     = 86400
}
