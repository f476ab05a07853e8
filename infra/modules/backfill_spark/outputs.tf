output "service_account_email" {
  value       = google_service_account.backfill_spark.email
  description = "The batch's service account."
}

output "backfill_args" {
  value       = local.backfill_args
  description = "The ops CLI arguments the batch runs."
}
