# One Cloud Function (2nd gen) of the pipeline with its own service account and, when it is
# triggered by a topic, its own push subscription with retry policy and dead-letter topic.

variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  description = "Function name from docs/DESIGN.md, e.g. match-patient."
  type        = string
}

variable "entry_point" {
  description = "Callable exported by main.py at the root of the deployed source."
  type        = string
}

variable "description" {
  type = string
}

variable "source_bucket" {
  type = string
}

variable "source_object" {
  description = "Zip made by infra/package_source.py (main.py, functions/, shared/, requirements.txt)."
  type        = string
}

variable "build_service_account_id" {
  description = "Full id (projects/P/serviceAccounts/E) of the account that builds the function image."
  type        = string
}

variable "trigger_topic" {
  description = "Name of the topic that triggers the function; null for an HTTP function."
  type        = string
  default     = null
}

variable "publish_topics" {
  description = "Names of the topics the function writes to (publisher role on each, nothing more)."
  type        = set(string)
  default     = []
}

variable "fhir_store_id" {
  description = "Healthcare API FHIR store the function reads or writes; used only when fhir_store_role is set."
  type        = string
  default     = null
}

variable "fhir_store_role" {
  description = "Role on the FHIR store only (not the project); null when the district's FHIR server is not the Healthcare API."
  type        = string
  default     = null
  validation {
    condition = var.fhir_store_role == null ? true : contains([
      "roles/healthcare.fhirResourceReader",
      "roles/healthcare.fhirResourceEditor",
    ], var.fhir_store_role)
    error_message = "Only FHIR resource reader or editor is granted to a function."
  }
}

variable "firestore_database" {
  description = "Firestore database the function uses (datastore.user, conditioned on this database); null for none."
  type        = string
  default     = null
}

variable "environment" {
  description = "Plain DEDUP_* settings (shared/config.py)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Env var name -> Secret Manager secret id and the version read; the function gets accessor on these secrets only."
  type        = map(object({ secret = string, version = string }))
  default     = {}
  validation {
    condition     = alltrue([for s in values(var.secret_environment) : can(regex("^[1-9][0-9]*$", s.version))])
    error_message = "Pin a secret version number; latest would deploy an unreviewed secret."
  }
}

variable "ingress" {
  description = "Function ingress. All-traffic ingress is refused: triggers come from Pub/Sub or the VPC."
  type        = string
  default     = "ALLOW_INTERNAL_ONLY"
  validation {
    condition     = contains(["ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "function_checks_callers" {
  description = <<-EOT
    HTTP function that authenticates every caller itself (the relay: a Google ID token it verifies, or a
    shared secret). Cloud Run then lets requests through to it (run.invoker for allUsers) because it
    strips the signature of a token it verified itself; ingress stays internal.
  EOT
  type        = bool
  default     = false
}

variable "kms_key_name" {
  description = "KMS key encrypting the dead-letter topic (the district's Pub/Sub key)."
  type        = string
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/R/connectors/C) for a FHIR server on private addresses; null for none."
  type        = string
  default     = null
}

variable "max_instances" {
  type = number
}

variable "concurrency" {
  description = "Requests served at once by one instance (max_instance_request_concurrency)."
  type        = number
}

variable "cpu" {
  type    = string
  default = "1"
}

variable "memory" {
  type    = string
  default = "512Mi"
}

variable "timeout_seconds" {
  type = number
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message goes to the dead-letter topic (Pub/Sub allows 5..100)."
  type        = number
  default     = 10
}

variable "minimum_backoff" {
  type    = string
  default = "10s"
}

variable "maximum_backoff" {
  type    = string
  default = "600s"
}

variable "message_retention" {
  description = "How long unacknowledged messages (and dead letters) are kept."
  type        = string
}

variable "labels" {
  type    = map(string)
  default = {}
}
