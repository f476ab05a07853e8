output "fhir_store_id" {
  description = "Resource id used by IAM bindings."
  value       = google_healthcare_fhir_store.this.id
}

output "fhir_base_url" {
  description = "DEDUP_FHIR_BASE_URL for the functions."
  value       = "https://healthcare.googleapis.com/v1/${google_healthcare_fhir_store.this.id}/fhir"
}
