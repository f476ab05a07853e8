locals {
  labels = { app = "patient-dedup", district = var.district }

  healthcare_location = coalesce(var.healthcare_location, var.region)
  source_bucket       = coalesce(var.source_bucket, "${var.project_id}-dedup-source")
  uses_healthcare_api = var.fhir_mode != "external"

  # Topic names are the Settings defaults (shared/config.py, topic_*).
  topics = {
    patient_changes  = "patient-changes"
    ops_force_merge  = "ops-force-merge"
    merge_requests   = "merge-requests"
    merge_tasks      = "merge-tasks"
    merge_finalise   = "merge-finalise"
    ops_reconcile    = "ops-reconcile"
    resource_changes = "resource-changes"
    # Messages no entry point could understand, raw bytes and attributes as they came (plus
    # quarantine_reason, origin_topic): ops pull them from the quarantine subscription (below).
    quarantine = "quarantine"
    ops_sweep  = "ops-sweep"
  }

  fhir_store_id = (
    var.fhir_mode == "create" ? one(module.fhir_store[*].fhir_store_id) :
    var.fhir_mode == "existing-healthcare" ? var.existing_fhir_store_id : null
  )
  fhir_base_url = (
    var.fhir_mode == "create" ? one(module.fhir_store[*].fhir_base_url) :
    var.fhir_mode == "existing-healthcare" ? "https://healthcare.googleapis.com/v1/${coalesce(var.existing_fhir_store_id, "unset")}/fhir" :
    var.external_fhir_base_url
  )
  fhir_auth = local.uses_healthcare_api ? "google" : (var.external_fhir_token_secret == null ? "none" : "bearer")

  # DEDUP_* settings shared by every function (names: shared/config.py, field name upper-cased).
  # DEDUP_ENVIRONMENT=deployed: development defaults (the NIK key) are refused (shared/config.py).
  # DEDUP_TRUST_HEALTHCARE_NOTIFICATIONS: bodies on patient-changes are believed only where the
  # Healthcare service agent is its only publisher (google_pubsub_topic_iam_binding.healthcare_notifications).
  settings = merge({
    DEDUP_ENVIRONMENT                        = "deployed"
    DEDUP_PROJECT_ID                         = var.project_id
    DEDUP_FHIR_BASE_URL                      = local.fhir_base_url
    DEDUP_FHIR_AUTH                          = local.fhir_auth
    DEDUP_NIK_SYSTEM                         = var.nik_system
    DEDUP_NIK_IBU_SYSTEM                     = var.nik_ibu_system
    DEDUP_GOLDEN_TAG_SYSTEM                  = var.golden_tag_system
    DEDUP_SOURCE_PRIORITY                    = jsonencode(var.source_priority)
    DEDUP_TOPIC_PATIENT_CHANGES              = local.topics.patient_changes
    DEDUP_TOPIC_OPS_FORCE_MERGE              = local.topics.ops_force_merge
    DEDUP_TOPIC_MERGE_REQUESTS               = local.topics.merge_requests
    DEDUP_TOPIC_MERGE_TASKS                  = local.topics.merge_tasks
    DEDUP_TOPIC_MERGE_FINALISE               = local.topics.merge_finalise
    DEDUP_TOPIC_OPS_RECONCILE                = local.topics.ops_reconcile
    DEDUP_TOPIC_RESOURCE_CHANGES             = local.topics.resource_changes
    DEDUP_TOPIC_QUARANTINE                   = local.topics.quarantine
    DEDUP_TOPIC_OPS_SWEEP                    = local.topics.ops_sweep
    DEDUP_STUCK_AFTER_SECONDS                = tostring(var.stuck_after_seconds)
    DEDUP_STUCK_REPUBLISH_LIMIT              = tostring(var.stuck_republish_limit)
    DEDUP_TRUST_HEALTHCARE_NOTIFICATIONS     = tostring(local.uses_healthcare_api)
    DEDUP_FIRESTORE_DATABASE                 = var.firestore_database
    DEDUP_DEMOGRAPHIC_AUTO_MERGE_ENABLED     = tostring(var.demographic_auto_merge_enabled)
    DEDUP_ALLOW_THRESHOLDS_BELOW_CALIBRATION = tostring(var.allow_thresholds_below_calibration)
    # The district's matching models (model_store.tf); the functions load the current one.
    DEDUP_MODEL_STORE = "gs://${local.model_bucket}"
  }, local.threshold_settings, var.extra_settings)

  # Thresholds reach the functions only when an env sets them; otherwise the code's calibrated values.
  threshold_settings = { for name, value in {
    DEDUP_NAME_MATCH_THRESHOLD             = var.name_match_threshold
    DEDUP_NAME_REVIEW_THRESHOLD            = var.name_review_threshold
    DEDUP_NIK_NAME_MATCH_THRESHOLD         = var.nik_name_match_threshold
    DEDUP_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD = var.demographic_auto_merge_threshold
    DEDUP_MODEL_MERGE_WEIGHT               = var.model_merge_weight
  } : name => tostring(value) if value != null }

  # The relay's caller check (shared/adapters/caller_auth.py). The audience is the function's
  # cloudfunctions.net URL, known before the function exists; callers request ID tokens for it.
  relay_audience = "https://${var.region}-${var.project_id}.cloudfunctions.net/subscription-relay"
  relay_settings = length(var.relay_allowed_callers) == 0 ? tomap({}) : tomap({
    DEDUP_RELAY_AUDIENCE        = local.relay_audience
    DEDUP_RELAY_ALLOWED_CALLERS = jsonencode(var.relay_allowed_callers)
  })

  # Secret env var name -> Secret Manager secret id and the version read (pinned, never latest).
  nik_key_env = tomap({ DEDUP_NIK_HASH_KEY = { secret = var.nik_hash_key_secret, version = var.secret_versions.nik_hash_key } })
  fhir_token_env = (
    var.fhir_mode == "external" && var.external_fhir_token_secret != null
    ? tomap({ DEDUP_FHIR_BEARER_TOKEN = { secret = var.external_fhir_token_secret, version = var.secret_versions.external_fhir_token } })
    : tomap({})
  )
  relay_secret_env = (
    var.relay_shared_secret == null ? tomap({})
    : tomap({ DEDUP_RELAY_SHARED_SECRET = { secret = var.relay_shared_secret, version = var.secret_versions.relay_shared_secret } })
  )

  reader = local.uses_healthcare_api ? "roles/healthcare.fhirResourceReader" : null
  editor = local.uses_healthcare_api ? "roles/healthcare.fhirResourceEditor" : null

  # Scaling, from what each step does (README "Infrastructure" explains the numbers):
  # - match-patient: one FHIR read and one Firestore transaction per change; bulk loads arrive in
  #   bursts. 10 x 8 in flight keeps the Healthcare API and hot nik_index documents (transactions
  #   on one NIK serialise) from being flooded; Pub/Sub holds the rest of a burst.
  # - force-merge: ops-only and rare; one at a time.
  # - merge-fanout: reads one job and publishes a task per resource type (or finalise when none); cheap.
  # - merge-worker: the heavy step. Each task searches and rewrites one resource type with up to
  #   DEDUP_FHIR_CONCURRENCY parallel requests and batch bundles; 5 x 2 tasks keep the FHIR write
  #   rate within the store's quota. 1 GiB and 9 minutes for large compartments.
  # - merge-finaliser: updates a handful of patients per job and publishes the NIK's next request, if any.
  # - subscription-relay: only republishes notifications; many small requests.
  # - late-references: one indexed Firestore query per referenced patient of each clinical change; most
  #   changes reference no merged duplicate and cost nothing more. Bursts follow bulk loads.
  # - patient-merge: FHIR Patient/$merge, rare and human-driven; waits up to
  #   DEDUP_PATIENT_MERGE_WAIT_SECONDS for the merge before answering 202 with a Task.
  # - reconcile: daily (Cloud Scheduler) sweep for references that reached a duplicate after its
  #   merge; one at a time, long-running for a full scan.
  # - sweeper: every sweep_schedule, republishes or fails merge work stuck past stuck_after_seconds;
  #   a failed job's rewrites are put back from its journal (FHIR editor). One at a time.
  # The function list (name, entry point, trigger topic or "http") is functions/functions.json, shared
  # with the local pipeline and the tests; here, keyed by its names, what each function may touch and
  # its sizing. publish: keys of local.topics; fhir: the function talks to the FHIR server.
  function_list = jsondecode(file("${path.module}/../../../functions/functions.json")).functions
  topic_keys    = { for key, name in local.topics : name => key }
  function_defaults = {
    match-patient = {
      description   = "Matches a changed patient against the NIK index."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true, caller_check = false
      max_instances = 10, concurrency = 8, memory = "512Mi", timeout = 120
    }
    force-merge = {
      description   = "Ops-requested merge of the patients holding one NIK."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true, caller_check = false
      max_instances = 2, concurrency = 1, memory = "512Mi", timeout = 300
    }
    merge-fanout = {
      description   = "Opens a merge job and publishes one task per resource type."
      publish       = ["merge_tasks", "merge_finalise"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true, caller_check = false
      max_instances = 3, concurrency = 4, memory = "512Mi", timeout = 120
    }
    merge-worker = {
      description   = "Rewrites references of one resource type to the master."
      publish       = ["merge_finalise"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = false
      max_instances = 5, concurrency = 2, memory = "1Gi", timeout = 540
    }
    merge-finaliser = {
      description   = "Links duplicates to the master and closes the merge job."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = false
      max_instances = 2, concurrency = 1, memory = "512Mi", timeout = 300
    }
    reconcile = {
      description   = "Rewrites references that reached a duplicate after its merge."
      publish       = []
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = false
      max_instances = 1, concurrency = 1, memory = "1Gi", timeout = 540
    }
    sweeper = {
      description   = "Continues or fails merge requests and jobs stuck past their age."
      publish       = ["merge_requests", "merge_tasks", "merge_finalise"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = false
      max_instances = 1, concurrency = 1, memory = "512Mi", timeout = 540
    }
    late-references = {
      description   = "Rewrites a reference to an already merged duplicate when the resource changes."
      publish       = []
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = false
      max_instances = 5, concurrency = 8, memory = "512Mi", timeout = 120
    }
    # Authenticated like the relay (the same CallerVerifier and settings), so Cloud Run's own invoker
    # check is left to the function as for the relay.
    patient-merge = {
      description   = "FHIR Patient/$merge: an explicit, human-confirmed merge."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true, caller_check = true
      max_instances = 2, concurrency = 4, memory = "512Mi", timeout = 120
    }
    subscription-relay = {
      description   = "Republishes FHIR rest-hook notifications to patient-changes or resource-changes."
      publish       = ["patient_changes", "resource_changes"]
      fhir          = false, fhir_role = null, firestore = false, nik_key = false, caller_check = true
      max_instances = 5, concurrency = 40, memory = "256Mi", timeout = 30
    }
  }

  # The relay exists only for FHIR servers that call it; the Healthcare API publishes by itself.
  # trigger: the key of local.topics, null for the HTTP function.
  functions = {
    for f in local.function_list : f.name => merge(
      local.function_defaults[f.name],
      { entry_point = f.entry_point, trigger = f.trigger == "http" ? null : local.topic_keys[f.trigger] },
      try(var.function_limits[f.name], {}),
    )
    if f.name != "subscription-relay" || var.fhir_mode == "external"
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "terraform_data" "input_checks" {
  lifecycle {
    precondition {
      condition     = var.fhir_mode != "existing-healthcare" || var.existing_fhir_store_id != null
      error_message = "fhir_mode = existing-healthcare needs existing_fhir_store_id."
    }
    precondition {
      condition     = var.fhir_mode != "external" || var.external_fhir_base_url != null
      error_message = "fhir_mode = external needs external_fhir_base_url."
    }
    precondition {
      condition     = var.fhir_mode != "external" || length(var.relay_allowed_callers) > 0 || var.relay_shared_secret != null
      error_message = "fhir_mode = external needs the relay's callers (relay_allowed_callers) or a shared secret (relay_shared_secret): the relay has no built-in credential."
    }
  }
}

# --- Google APIs -------------------------------------------------------------------------------------

resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com", # images built for the functions
    "cloudbuild.googleapis.com",       # builds the functions from source
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "firestore.googleapis.com",
    "healthcare.googleapis.com",
    "iam.googleapis.com",
    "iap.googleapis.com", # Identity-Aware Proxy in front of the review workbench
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",            # 2nd gen functions run on Cloud Run
    "cloudscheduler.googleapis.com", # the daily reconcile, the sweeper
    "cloudkms.googleapis.com",       # the key of the Pub/Sub topics
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Pub/Sub topics ------------------------------------------------------------------------------------

# Messages carry patient data: relayed notifications are whole Patients, merge tasks clinical resources
# (RelatedPerson and Person too), ops-force-merge a NIK. Every topic, dead-letter topics included, is
# encrypted with the district's own key, and keeps messages for var.message_retention only (4 days:
# a long weekend to replay a backlog after a bad deployment or to read the dead letters).
resource "google_kms_key_ring" "pubsub" {
  project  = var.project_id
  name     = "dedup-pubsub"
  location = var.region

  depends_on = [google_project_service.enabled]
}

resource "google_kms_crypto_key" "pubsub" {
  name            = "dedup-pubsub-messages"
  key_ring        = google_kms_key_ring.pubsub.id
  rotation_period = "7776000s" # 90 days; old versions stay to decrypt retained messages
  labels          = local.labels
  lifecycle {
    prevent_destroy = true
  }
}

# Pub/Sub encrypts and decrypts with its service agent; publishers and subscribers need nothing more.
resource "google_kms_crypto_key_iam_member" "pubsub_agent" {
  crypto_key_id = google_kms_crypto_key.pubsub.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "pipeline" {
  for_each                   = local.topics
  project                    = var.project_id
  name                       = each.value
  labels                     = local.labels
  kms_key_name               = google_kms_crypto_key.pubsub.id
  message_retention_duration = var.message_retention

  depends_on = [google_project_service.enabled, google_kms_crypto_key_iam_member.pubsub_agent]
}

# --- FHIR store --------------------------------------------------------------------------------------

# The Healthcare API publishes store changes with its service agent, and it alone may publish there:
# each binding is authoritative for the publisher role on its topic (any other member is removed), so
# a message on them cannot be forged. Matching may then believe a body on patient-changes
# (DEDUP_TRUST_HEALTHCARE_NOTIFICATIONS); the late-reference fix re-reads every resource anyway.
# With an external FHIR server the topics are the relay's (its function's own grant) and nothing is believed.
resource "google_pubsub_topic_iam_binding" "healthcare_notifications" {
  count   = local.uses_healthcare_api ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.pipeline["patient_changes"].name
  role    = "roles/pubsub.publisher"
  members = ["serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"]

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic_iam_binding" "healthcare_resource_notifications" {
  count   = local.uses_healthcare_api ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.pipeline["resource_changes"].name
  role    = "roles/pubsub.publisher"
  members = ["serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"]

  depends_on = [google_project_service.enabled]
}

module "fhir_store" {
  source                = "../fhir_store"
  count                 = var.fhir_mode == "create" ? 1 : 0
  project_id            = var.project_id
  location              = local.healthcare_location
  dataset               = var.fhir_dataset
  fhir_store            = var.fhir_store
  notification_topic_id = google_pubsub_topic.pipeline["patient_changes"].id
  resource_topic_id     = google_pubsub_topic.pipeline["resource_changes"].id
  labels                = local.labels

  depends_on = [google_pubsub_topic_iam_binding.healthcare_notifications, google_pubsub_topic_iam_binding.healthcare_resource_notifications]
}

# --- Firestore ---------------------------------------------------------------------------------------

resource "google_firestore_database" "dedup" {
  count       = var.create_firestore_database ? 1 : 0
  project     = var.project_id
  name        = var.firestore_database
  location_id = var.region
  type        = "FIRESTORE_NATIVE"
  # The NIK index is the pipeline's memory of which patients are one person.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.enabled]
}

# Point-in-time recovery reaches 7 days back; backups keep the index for longer (a bad merge or a
# wrong key noticed after a week). Daily kept 7 days, weekly (Sunday) kept 14 weeks.
resource "google_firestore_backup_schedule" "daily" {
  project   = var.project_id
  database  = var.firestore_database
  retention = "604800s"
  daily_recurrence {}

  depends_on = [google_firestore_database.dedup]
}

resource "google_firestore_backup_schedule" "weekly" {
  project   = var.project_id
  database  = var.firestore_database
  retention = "8467200s"
  weekly_recurrence {
    day = "SUNDAY"
  }

  depends_on = [google_firestore_database.dedup]
}

# Data Access audit logs: who read or wrote patient records (FHIR store) and the index (Firestore).
resource "google_project_iam_audit_config" "data_access" {
  for_each = toset(["healthcare.googleapis.com", "datastore.googleapis.com", "firestore.googleapis.com"])
  project  = var.project_id
  service  = each.value
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# --- NIK hashing key ---------------------------------------------------------------------------------

# Only the secret is managed here; its value is added out of band (README) so it never sits in
# Terraform state. Changing the key re-keys every Firestore document id: never rotate it casually,
# and never let Terraform destroy it (the index would be unreadable).
resource "google_secret_manager_secret" "nik_hash_key" {
  project   = var.project_id
  secret_id = var.nik_hash_key_secret
  labels    = local.labels
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
  lifecycle {
    prevent_destroy = true
  }

  depends_on = [google_project_service.enabled]
}

# --- function source and build identity ---------------------------------------------------------------

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the functions' source zips and Terraform plan files (no patient data, no secret values); access logs would need a second bucket per district for no security gain.
  project                     = var.project_id
  name                        = local.source_bucket
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age        = 90
      with_state = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "dedup-function-build"
  display_name = "dedup function builder"
  description  = "Builds the functions' images from the source zip."
}

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# --- functions ---------------------------------------------------------------------------------------

module "function" {
  source   = "../pubsub_function"
  for_each = local.functions

  project_id               = var.project_id
  region                   = var.region
  name                     = each.key
  entry_point              = each.value.entry_point
  description              = each.value.description
  source_bucket            = google_storage_bucket.source.name
  source_object            = var.source_object
  build_service_account_id = google_service_account.build.id
  labels                   = local.labels

  trigger_topic = each.value.trigger == null ? null : google_pubsub_topic.pipeline[each.value.trigger].name
  # Every Pub/Sub-triggered function quarantines the messages it cannot understand (functions/_delivery.py).
  publish_topics = toset(concat([for t in each.value.publish : google_pubsub_topic.pipeline[t].name],
  each.value.trigger == null ? [] : [google_pubsub_topic.pipeline["quarantine"].name]))

  fhir_store_id      = local.fhir_store_id
  fhir_store_role    = each.value.fhir_role
  firestore_database = each.value.firestore ? var.firestore_database : null
  environment        = merge(local.settings, each.value.caller_check ? local.relay_settings : tomap({}))
  secret_environment = merge(
    each.value.nik_key ? local.nik_key_env : tomap({}),
    each.value.fhir ? local.fhir_token_env : tomap({}),
    each.value.caller_check ? local.relay_secret_env : tomap({}),
  )

  ingress = each.value.trigger == null ? var.relay_ingress : "ALLOW_INTERNAL_ONLY"
  # Cloud Run strips the signature of an ID token it verified, so the relay cannot verify it again:
  # its invoker check is left to the function (ingress stays internal).
  function_checks_callers = each.value.caller_check

  kms_key_name      = google_kms_crypto_key.pubsub.id
  message_retention = var.message_retention

  vpc_connector         = each.value.fhir ? var.vpc_connector : null
  max_instances         = each.value.max_instances
  concurrency           = each.value.concurrency
  memory                = each.value.memory
  timeout_seconds       = each.value.timeout
  max_delivery_attempts = var.max_delivery_attempts

  depends_on = [
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
    google_secret_manager_secret.nik_hash_key,
    google_firestore_database.dedup,
    google_kms_crypto_key_iam_member.pubsub_agent,
  ]
}

# --- quarantine ----------------------------------------------------------------------------------------

# Where ops read quarantined messages (gcloud pubsub subscriptions pull; README "Quarantined messages").
# Nothing consumes it automatically: a malformed message needs a person (fix the sender, then replay).
resource "google_pubsub_subscription" "quarantine" {
  project = var.project_id
  name    = "${local.topics.quarantine}-hold"
  topic   = google_pubsub_topic.pipeline["quarantine"].name
  labels  = local.labels
  # Like every topic holding patient data: days, not a week (the alert fires on the first message).
  message_retention_duration = var.message_retention
  retain_acked_messages      = true
  ack_deadline_seconds       = 60
  expiration_policy {
    ttl = ""
  }
}

# --- scheduled reconcile -----------------------------------------------------------------------------

# Late references (data that reaches a duplicate after its merge finished) are rewritten daily; the
# weekly run also reads every resource, for references no search parameter reaches.
resource "google_cloud_scheduler_job" "reconcile" {
  for_each = {
    daily  = { schedule = var.reconcile_schedule, full = false }
    weekly = { schedule = var.reconcile_full_schedule, full = true }
  }
  project   = var.project_id
  region    = var.region
  name      = "dedup-reconcile-${each.key}"
  schedule  = each.value.schedule
  time_zone = var.time_zone
  pubsub_target {
    topic_name = google_pubsub_topic.pipeline["ops_reconcile"].id
    data       = base64encode(jsonencode({ full = each.value.full }))
  }

  depends_on = [google_project_service.enabled]
}

# --- scheduled sweep of stuck merge work -----------------------------------------------------------

resource "google_cloud_scheduler_job" "sweep" {
  project   = var.project_id
  region    = var.region
  name      = "dedup-sweep"
  schedule  = var.sweep_schedule
  time_zone = var.time_zone
  pubsub_target {
    topic_name = google_pubsub_topic.pipeline["ops_sweep"].id
    data       = base64encode(jsonencode({}))
  }

  depends_on = [google_project_service.enabled]
}

# --- alerting ----------------------------------------------------------------------------------------

module "monitoring" {
  source     = "../monitoring"
  project_id = var.project_id
  district   = var.district
  dead_letter_subscriptions = {
    for name, f in module.function : name => f.dead_letter_subscription if local.functions[name].trigger != null
  }
  function_services       = { for name, f in module.function : name => f.service_name }
  quarantine_topic        = google_pubsub_topic.pipeline["quarantine"].name
  quarantine_subscription = google_pubsub_subscription.quarantine.name
  alert_emails            = var.alert_emails
  error_threshold_per_5m  = var.error_threshold_per_5m
  relay_service           = try(module.function["subscription-relay"].service_name, null)
  relay_rejections_per_5m = var.relay_rejections_per_5m
}
