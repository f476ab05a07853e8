output "url" {
  value = google_cloud_run_v2_service.workbench.uri
}

output "iap_audience" {
  value = local.iap_audience
}

output "service_account" {
  value = google_service_account.workbench.email
}
