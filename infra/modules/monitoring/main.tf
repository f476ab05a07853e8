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

# The relay answers 401 to a caller it does not accept (shared/services/relay.py logs relay_rejected with
# a reason code). A 4xx never reaches the 5xx alert, and a FHIR server with a stale token or secret loses
# every patient change silently, so rejections are counted from the logs and alerted on.
resource "google_logging_metric" "relay_rejections" {
  count   = var.relay_service == null ? 0 : 1
  project = var.project_id
  name    = "dedup-relay-rejections"
  filter  = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${var.relay_service}\" AND jsonPayload.event = \"relay_rejected\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "missing-header, not-bearer, bad-secret, bad-token, expired-token, wrong-audience, unknown-caller"
    }
  }
  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }
}

resource "google_monitoring_alert_policy" "relay_rejections" {
  count                 = var.relay_service == null ? 0 : 1
  project               = var.project_id
  display_name          = "dedup ${var.district}: relay rejects callers"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "ERROR"

  conditions {
    display_name = "subscription-relay answered 401"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.relay_rejections[0].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.relay_rejections_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.reason"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The relay refused calls (reason label: expired-token or unknown-caller = the FHIR server's ID token or service account; bad-secret = its shared secret is not the current Secret Manager version; wrong-audience = it requests tokens for another URL). Patient changes sent in those calls were not relayed: fix the FHIR server's Subscription header, then run `python -m ops backfill` for the gap."
  }
}

# Malformed messages: each entry point logs "event_malformed" (functions/_delivery.py) once it has put
# one on the quarantine topic. Counted here from the logs (jsonPayload.event: the structlog event name).
resource "google_logging_metric" "quarantined_messages" {
  project = var.project_id
  name    = "dedup-${var.district}-quarantined-messages"
  filter  = "resource.type = \"cloud_run_revision\" AND jsonPayload.event = \"event_malformed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Reason code of the malformed message (never its content)."
    }
    labels {
      key         = "topic"
      value_type  = "STRING"
      description = "Topic the message came from."
    }
  }
  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
    topic  = "EXTRACT(jsonPayload.topic)"
  }
}

# One malformed message is one patient change or merge step nobody will process until ops look.
resource "google_monitoring_alert_policy" "quarantined_messages" {
  project               = var.project_id
  display_name          = "dedup ${var.district}: quarantined messages"
  combiner              = "OR"
  notification_channels = local.channels
  severity              = "WARNING"

  conditions {
    display_name = "a message was quarantined"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.quarantined_messages.name}\""
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
    content   = "A function received a message it could not understand and put it, unchanged, on ${var.quarantine_topic} (attributes quarantine_reason, origin_topic). Read it with `gcloud pubsub subscriptions pull ${var.quarantine_subscription}` (README, \"Quarantined messages\"), fix the sender, then republish the body to its origin topic. Messages stay for the district's message retention (4 days by default)."
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
