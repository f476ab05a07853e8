output "topics" {
  value = { for k, t in google_pubsub_topic.pipeline : k => t.id }
}

output "fhir_base_url" {
  value = local.fhir_base_url
}

output "functions" {
  description = "Function name -> runtime service account and URL."
  value = {
    for name, f in module.function : name => { service_account = f.service_account_email, uri = f.uri }
  }
}

output "source_bucket" {
  value = google_storage_bucket.source.name
}

output "nik_hash_key_secret" {
  value = google_secret_manager_secret.nik_hash_key.id
}

output "relay_audience" {
  description = "Audience of the ID tokens the relay accepts (relay_allowed_callers request tokens for it); the relay answers at this URL too."
  value       = local.relay_audience
}
