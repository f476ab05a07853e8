# The review workbench (infra/modules/workbench): deployed when Cloud Build passes its image.

variable "workbench_image" {
  description = "Image of the review workbench (Cloud Build, workbench/Dockerfile); null: not deployed."
  type        = string
  default     = null
}

variable "workbench_roles" {
  description = "Workbench users: e-mail -> viewer | reviewer | supervisor."
  type        = map(string)
  default     = {}
}

module "workbench" {
  source = "../workbench"
  count  = var.workbench_image == null ? 0 : 1

  project_id           = var.project_id
  project_number       = data.google_project.this.number
  region               = var.region
  image                = var.workbench_image
  roles                = var.workbench_roles
  settings             = local.settings
  secret_environment   = merge(local.nik_key_env, local.fhir_token_env)
  session_key_version  = var.secret_versions.workbench_session_key
  fhir_store_id        = local.fhir_store_id
  fhir_store_role      = local.editor
  firestore_database   = var.firestore_database
  merge_requests_topic = google_pubsub_topic.pipeline["merge_requests"].name
  vpc_connector        = var.vpc_connector
  labels               = local.labels

  depends_on = [google_project_service.enabled, google_firestore_database.dedup]
}

output "workbench_url" {
  value = one(module.workbench[*].url)
}

# Where Cloud Build pushes the workbench image (cloudbuild.yaml, step workbench-image).
resource "google_artifact_registry_repository" "dedup" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest; the repository holds only the workbench's application image (no patient data, no secrets). CMEK would add a KMS key per district with no key-custody requirement stated.
  project       = var.project_id
  location      = var.region
  repository_id = "dedup"
  format        = "DOCKER"
  labels        = local.labels
  description   = "Images of the review workbench."

  depends_on = [google_project_service.enabled]
}
