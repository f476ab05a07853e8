output "name" {
  description = "The job's name, for an invoker grant or a scheduler's target."
  value       = google_cloud_run_v2_job.job.name
}
