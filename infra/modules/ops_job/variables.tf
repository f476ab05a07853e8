variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "name" {
  description = "The job's name (gcloud run jobs execute NAME)."
  type        = string
}

variable "labels" {
  type    = map(string)
  default = {}
}

variable "service_account_email" {
  description = "The account the job runs as: the caller creates it and grants it what the job touches."
  type        = string
}

variable "image" {
  description = "The ops image (infra/backfill.Dockerfile)."
  type        = string
}

variable "command" {
  description = "The ops CLI command the task runs."
  type        = list(string)
}

variable "timeout_seconds" {
  type = number
}

variable "max_retries" {
  description = "Task retries: set only for a command that a retry resumes or repeats safely."
  type        = number
}

variable "cpu" {
  type = number
}

variable "memory" {
  type = string
}

variable "environment" {
  description = "Plain environment variables (the district's settings)."
  type        = map(string)
  default     = {}
}

variable "secret_environment" {
  description = "Environment variables read from Secret Manager: name -> { secret, version } (a pinned version)."
  type        = map(object({ secret = string, version = string }))
  default     = {}
}

variable "buckets" {
  description = "Cloud Storage buckets mounted through FUSE: { name, bucket, mount_path, read_only }."
  type        = list(object({ name = string, bucket = string, mount_path = string, read_only = bool }))
  default     = []
}

variable "vpc_connector" {
  description = "Serverless VPC connector for private ranges (an external FHIR server), or null."
  type        = string
  default     = null
}
