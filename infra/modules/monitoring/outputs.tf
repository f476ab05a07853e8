output "alert_policy_ids" {
  value = concat(
    [for p in google_monitoring_alert_policy.dead_letters : p.id],
    [for p in google_monitoring_alert_policy.function_errors : p.id],
  )
}
