resource "google_healthcare_dataset" "this" {
  project  = var.project_id
  location = var.location
  name     = var.dataset
}

resource "google_healthcare_fhir_store" "this" {
  name    = var.fhir_store
  dataset = google_healthcare_dataset.this.id
  version = "R4"
  labels  = var.labels

  # Legacy loaders PUT patients with their own ids.
  enable_update_create = true
  # Referential integrity stays on: a merge must never leave a dangling reference.
  disable_referential_integrity = false
  # Unmerge restores resources from their journalled versions (vread), so history must be kept.
  disable_resource_versioning = false
  enable_history_import       = false

  notification_configs {
    pubsub_topic = var.notification_topic_id
    # The function reads the resource itself; full payloads are not guaranteed and would put
    # patient data into Pub/Sub messages.
    send_full_resource = false
  }
  # Every change again, for the live late-reference fix (it ignores patients and audit records).
  notification_configs {
    pubsub_topic       = var.resource_topic_id
    send_full_resource = false
  }

  lifecycle {
    prevent_destroy = true
  }
}
