# Alerts of one district: dead letters waiting, and functions failing.

variable "project_id" {
  type = string
}

variable "district" {
  type = string
}

variable "dead_letter_subscriptions" {
  description = "Function name -> pull subscription holding its dead letters."
  type        = map(string)
}

variable "function_services" {
  description = "Function name -> Cloud Run service name behind it."
  type        = map(string)
}

variable "alert_emails" {
  description = "Addresses that receive alerts (one email notification channel each)."
  type        = list(string)
  default     = []
}

variable "error_threshold_per_5m" {
  description = "5xx answers of one function within 5 minutes that raise an alert. Single failures are normal: a handler raises on transient FHIR or Firestore errors and Pub/Sub redelivers."
  type        = number
  default     = 10
}

variable "relay_service" {
  description = "Cloud Run service of subscription-relay; null when the district has no relay."
  type        = string
  default     = null
}

variable "relay_rejections_per_5m" {
  description = "Rejected relay calls (401, relay_rejected log events) within 5 minutes that raise an alert."
  type        = number
  default     = 0
}

variable "quarantine_topic" {
  description = "Topic the functions publish messages they cannot understand to (shared/config.py topic_quarantine)."
  type        = string
}

variable "quarantine_subscription" {
  description = "Pull subscription holding the quarantined messages for ops."
  type        = string
}
