locals {
  triggered = var.trigger_topic != null
  # Account ids are 6..30 characters: "dedup-" + the function name fits for every DESIGN.md name.
  account_id = substr("dedup-${var.name}", 0, 30)
  labels     = merge(var.labels, { function = var.name })
}

data "google_project" "this" {
  project_id = var.project_id
}

# --- identity: one runtime account per function, holding only what that function needs --------------

resource "google_service_account" "runtime" {
  project      = var.project_id
  account_id   = local.account_id
  display_name = "dedup ${var.name} runtime"
  description  = "Runs the ${var.name} Cloud Function; roles are granted on single resources only."
}

resource "google_pubsub_topic_iam_member" "publish" {
  for_each = var.publish_topics
  project  = var.project_id
  topic    = each.value
  role     = "roles/pubsub.publisher"
  member   = google_service_account.runtime.member
}

resource "google_healthcare_fhir_store_iam_member" "fhir" {
  count         = var.fhir_store_role == null ? 0 : 1
  fhir_store_id = var.fhir_store_id
  role          = var.fhir_store_role
  member        = google_service_account.runtime.member
}

# Firestore IAM is granted on the project; the condition narrows it to the pipeline's database.
resource "google_project_iam_member" "firestore" {
  count   = var.firestore_database == null ? 0 : 1
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.runtime.member
  condition {
    title       = "dedup-database-only"
    description = "Only the deduplication database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

resource "google_secret_manager_secret_iam_member" "secret" {
  for_each  = var.secret_environment
  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.runtime.member
}

# --- the function -------------------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description
  labels      = local.labels

  build_config {
    runtime         = "python311"
    entry_point     = var.entry_point
    service_account = var.build_service_account_id
    # Pub/Sub pushes reach the function as CloudEvents (functions-framework converts a push body);
    # the relay is a plain HTTP function.
    environment_variables = {
      GOOGLE_FUNCTION_SIGNATURE_TYPE = local.triggered ? "cloudevent" : "http"
    }
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.runtime.email
    ingress_settings                 = var.ingress
    all_traffic_on_latest_revision   = true
    min_instance_count               = 0
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    available_cpu                    = var.cpu
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    # Only private ranges go through the connector; Google APIs stay on the default path.
    vpc_connector                 = var.vpc_connector
    vpc_connector_egress_settings = var.vpc_connector == null ? null : "PRIVATE_RANGES_ONLY"
    # gunicorn in functions-framework serves THREADS requests at once (default 4 per CPU): match it
    # to the concurrency Cloud Run sends, so requests do not queue inside the instance.
    environment_variables = merge(var.environment, { THREADS = tostring(var.concurrency) })

    dynamic "secret_environment_variables" {
      for_each = var.secret_environment
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  # The runtime account must be able to read its secrets before the first revision starts.
  depends_on = [google_secret_manager_secret_iam_member.secret]
}

# --- invocation: only the push identity may call a triggered function; an HTTP one checks its callers ---

resource "google_service_account" "push" {
  count        = local.triggered ? 1 : 0
  project      = var.project_id
  account_id   = substr("dedup-${var.name}-push", 0, 30)
  display_name = "dedup ${var.name} Pub/Sub push identity"
  description  = "Signs the OIDC token Pub/Sub sends to ${var.name}; holds run.invoker on that function only."
}

# Pub/Sub mints the push OIDC tokens with its service agent.
resource "google_service_account_iam_member" "push_token_creator" {
  count              = local.triggered ? 1 : 0
  service_account_id = google_service_account.push[0].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  count    = local.triggered ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push[0].member
}

# Only for an HTTP function that verifies every caller itself (the relay, shared/adapters/caller_auth.py):
# Cloud Run replaces the signature of an ID token it checked, so the function could not check it again.
resource "google_cloud_run_v2_service_iam_member" "callers_checked_by_function" {
  count    = var.function_checks_callers ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"

  lifecycle {
    precondition {
      condition     = !local.triggered
      error_message = "Only an HTTP function checks its callers itself; Pub/Sub pushes use the push identity."
    }
  }
}

# --- delivery: push subscription with retry policy and dead-letter topic --------------------------------

# Dead letters are copies of pipeline messages (patient data): the same key and retention as the topics.
resource "google_pubsub_topic" "dead_letter" {
  count                      = local.triggered ? 1 : 0
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  labels                     = merge(local.labels, { role = "dead-letter" })
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.message_retention
}

# Holds dead letters for inspection; alerting watches its backlog. Replay is a seek of the trigger
# subscription (the topics keep a week of messages; handlers are idempotent).
# A subscription on a dead-letter topic has no dead-letter policy of its own: nothing nacks it.
resource "google_pubsub_subscription" "dead_letter_hold" {
  count                      = local.triggered ? 1 : 0
  project                    = var.project_id
  name                       = "${var.name}-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter[0].name
  labels                     = merge(local.labels, { role = "dead-letter" })
  ack_deadline_seconds       = 60
  message_retention_duration = var.message_retention
  retain_acked_messages      = true
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "trigger" {
  count   = local.triggered ? 1 : 0
  project = var.project_id
  name    = "${var.name}-trigger"
  topic   = var.trigger_topic
  labels  = local.labels

  # Push waits this long for the function's answer: longer than the function may run.
  ack_deadline_seconds       = min(600, var.timeout_seconds + 30)
  message_retention_duration = var.message_retention

  push_config {
    # The topic path makes functions-framework build the messagePublished CloudEvent with this source.
    push_endpoint = "${google_cloudfunctions2_function.this.service_config[0].uri}/projects/${var.project_id}/topics/${var.trigger_topic}"
    oidc_token {
      service_account_email = google_service_account.push[0].email
      audience              = google_cloudfunctions2_function.this.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.minimum_backoff
    maximum_backoff = var.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[0].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  # Rarely used topics (ops-force-merge) must not lose their subscription to inactivity.
  expiration_policy {
    ttl = ""
  }

  depends_on = [google_cloud_run_v2_service_iam_member.push_invoker]
}

# Dead-lettering needs the Pub/Sub service agent to publish to the dead-letter topic and to
# acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count   = local.triggered ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count        = local.triggered ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.trigger[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
