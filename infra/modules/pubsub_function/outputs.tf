output "function_name" {
  value = google_cloudfunctions2_function.this.name
}

output "service_name" {
  description = "Cloud Run service behind the function (metrics and invoker bindings use it)."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}

output "uri" {
  value = google_cloudfunctions2_function.this.service_config[0].uri
}

output "service_account_email" {
  value = google_service_account.runtime.email
}

output "dead_letter_subscription" {
  description = "Pull subscription holding this function's dead letters; null for an HTTP function."
  value       = local.triggered ? google_pubsub_subscription.dead_letter_hold[0].name : null
}
