# The review workbench (workbench/ in the repository): a Cloud Run service with Identity-Aware Proxy
# enabled on it, its own service account, and the users' roles.

variable "project_id" {
  type = string
}

variable "project_number" {
  description = "Numeric project id: IAP's service agent and the audience of its signed header."
  type        = string
}

variable "region" {
  type = string
}

variable "name" {
  description = "Cloud Run service name (part of IAP's audience)."
  type        = string
  default     = "dedup-workbench"
}

variable "image" {
  description = "Container image built by Cloud Build from workbench/Dockerfile (by digest)."
  type        = string
}

variable "roles" {
  description = "User e-mail -> viewer | reviewer | supervisor (DEDUP_WORKBENCH_ROLES). Each user also gets IAP access."
  type        = map(string)
  validation {
    condition     = alltrue([for role in values(var.roles) : contains(["viewer", "reviewer", "supervisor"], role)])
    error_message = "Roles are viewer, reviewer or supervisor."
  }
}

variable "settings" {
  description = "The district's DEDUP_* settings (the same as the functions')."
  type        = map(string)
}

variable "secret_environment" {
  description = "Secret env var -> Secret Manager secret id and pinned version (the NIK key: the page compares NIKs as keyed tokens)."
  type        = map(object({ secret = string, version = string }))
}

variable "session_key_version" {
  description = "Version of the session-signing key the service reads (a number; never latest)."
  type        = string
  default     = "1"
  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.session_key_version))
    error_message = "Secret versions are numbers; latest is not allowed."
  }
}

variable "session_key_secret" {
  description = "Secret Manager secret id of the session-signing key (CSRF tokens). Terraform creates the secret, never its value."
  type        = string
  default     = "dedup-workbench-session-key"
}

variable "fhir_store_id" {
  description = "Healthcare API store the workbench reads (null for an external FHIR server)."
  type        = string
  default     = null
}

variable "fhir_store_role" {
  description = "Role on the store: the district's FHIR editor role (a supervisor's unmerge writes)."
  type        = string
  default     = null
}

variable "firestore_database" {
  type = string
}

variable "vpc_connector" {
  type    = string
  default = null
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "merge_requests_topic" {
  description = "Topic an approval publishes to (DEDUP_TOPIC_MERGE_REQUESTS)."
  type        = string
}
