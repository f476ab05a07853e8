resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  project      = var.project_id
  display_name = "dedup ${var.district}: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

locals {
  channels = [for c in google_monitoring_notification_channel.email : c.id]
}

# Any message in a dead-letter subscription means a change was not processed after every retry:
# a patient may stay unmatched or a merge unfinished until someone replays it.
resource "google_monitoring_alert_policy" "dead_letters" {
  for_each              = var.dead_letter_subscriptions
  project               = var.project_id
  display_name          = "dedup ${var.district}: dead letters for ${each.key}"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "${each.value} has undelivered messages"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${each.value}\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Messages for ${each.key} exhausted their retries. Read the function's error logs (resource ids and NIK tokens only), fix the cause, then replay: gcloud pubsub subscriptions seek ${each.key}-trigger --time=<before the failures> (topics keep 7 days; handlers are idempotent). The dead letters stay in ${each.value} for inspection."
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  for_each              = var.function_services
  project               = var.project_id
  display_name          = "dedup ${var.district}: ${each.key} errors"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "WARNING"

  conditions {
    display_name = "${each.key} answers 5xx"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${each.value}\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.labels.response_code_class = \"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.error_threshold_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "${each.key} is failing repeatedly; Pub/Sub keeps redelivering with backoff and dead-letters after the last attempt. Check the function's logs and the FHIR server's quota (429s)."
  }
}

# Merge work the sweeper (or a finalise refusing a chain) gave up on: the job was rolled back and its
# request released, so those patients stay unmerged until someone looks (logs: job_id, reason).
resource "google_logging_metric" "merge_failed" {
  project     = var.project_id
  name        = "dedup_${var.district}_merge_failed"
  description = "Merge jobs failed and merge requests released (sweeper, chain refused)."
  filter      = "jsonPayload.event = (\"merge_job_failed\" OR \"merge_request_released\")"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "merge_failed" {
  project               = var.project_id
  display_name          = "dedup ${var.district}: merge failed or released"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "a merge job failed or a request was released"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.merge_failed.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A merge could not finish and was failed: its rewrites were put back from its journal and its group's request released (members active again). See the logs for job_id and reason (stuck-running, stuck-finalising, stuck-open, job-unmerged, chain:...), `python -m ops jobs --stuck` for what is still stuck; the rollback's conflicts are on the job document (rollback_conflicts)."
  }
}
