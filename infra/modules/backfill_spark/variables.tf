variable "project_id" {
  type        = string
  description = "The district's project."
}

variable "region" {
  type        = string
  description = "Where the batch runs (the district's region: the data stays there)."
}

variable "run_batch" {
  type        = bool
  default     = false
  description = "Creating a Dataproc batch runs it: false (the default) creates only the service account and its roles; set true for one apply to run the backfill, then back to false."
}

variable "batch_id" {
  type        = string
  default     = "dedup-backfill-spark"
  description = "The batch's id (unique per run in the region: change it for each run)."
}

variable "subnetwork_uri" {
  type        = string
  description = "The subnet the driver and executors run in (Private Google Access on: they reach Firestore, Pub/Sub, the Healthcare API and Cloud Storage by Google's private routes only)."
}

variable "container_image" {
  type        = string
  description = "The batch's container image: Python 3.11 with requirements.txt and requirements-ops.txt installed and no Spark of its own (Dataproc Serverless brings Spark); Artifact Registry in the district's project."
}

variable "code_bucket" {
  type        = string
  description = "Bucket (name, no gs://) holding the code the district's pipeline uploads: dedup-code.zip (shared/ and ops/) and backfill_main.py (infra/spark/backfill_main.py); the Spark checkpoints go under checkpoints/."
}

variable "runtime_version" {
  type        = string
  default     = "2.3"
  description = "Dataproc Serverless runtime (Spark 3.5+ and Java 17)."
}

variable "settings" {
  type        = map(string)
  description = "The functions' DEDUP_* settings (the district module's output), given to the driver's environment."
}

variable "model_bucket" {
  type        = string
  description = "The district's model bucket (name, no gs://; the district module's <project>-dedup-models): the batch reads the current model there, as DEDUP_MODEL_STORE in var.settings names it."
}

variable "driver_cores" {
  type        = number
  default     = 4
  description = "The driver's cores (Dataproc Serverless: 4, 8 or 16); the backfill decides in that many processes (--decide-workers)."
  validation {
    condition     = contains([4, 8, 16], var.driver_cores)
    error_message = "Dataproc Serverless drivers have 4, 8 or 16 cores."
  }
}

variable "nik_hash_key_secret_version" {
  type        = string
  description = "Secret Manager version of the NIK key (projects/P/secrets/S/versions/N, pinned): the driver reads it at start (backfill_main.py), it never appears in the batch's properties."
}

variable "nik_hash_key_secret" {
  type        = string
  description = "The NIK key's secret id (the batch's account may read that secret only)."
}

variable "fhir_store_id" {
  type        = string
  default     = null
  description = "The Healthcare API FHIR store the batch reads (null: it reads --ndjson files)."
}

variable "fhir_reader_role" {
  type        = string
  default     = null
  description = "The role reading the FHIR store, granted on the store only (the district module's reader role)."
}

variable "merge_requests_topic" {
  type        = string
  description = "The merge-requests topic (id) the batch publishes the merges it decided to."
}

variable "firestore_database" {
  type        = string
  description = "The deduplication Firestore database (the batch's Firestore role is conditioned on it)."
}

variable "kms_key" {
  type        = string
  description = "Cloud KMS key encrypting the batch's disks and its shuffle and work data (the spool holds Patients)."
}

variable "ttl" {
  type        = string
  default     = "14400s"
  description = "The batch is stopped after this long (a run resumes with the same --run-id)."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels of the batch."
}
