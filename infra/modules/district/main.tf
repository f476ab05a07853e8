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
  settings = merge({
    DEDUP_PROJECT_ID                       = var.project_id
    DEDUP_FHIR_BASE_URL                    = local.fhir_base_url
    DEDUP_FHIR_AUTH                        = local.fhir_auth
    DEDUP_NIK_SYSTEM                       = var.nik_system
    DEDUP_NIK_IBU_SYSTEM                   = var.nik_ibu_system
    DEDUP_GOLDEN_TAG_SYSTEM                = var.golden_tag_system
    DEDUP_SOURCE_PRIORITY                  = jsonencode(var.source_priority)
    DEDUP_TOPIC_PATIENT_CHANGES            = local.topics.patient_changes
    DEDUP_TOPIC_OPS_FORCE_MERGE            = local.topics.ops_force_merge
    DEDUP_TOPIC_MERGE_REQUESTS             = local.topics.merge_requests
    DEDUP_TOPIC_MERGE_TASKS                = local.topics.merge_tasks
    DEDUP_TOPIC_MERGE_FINALISE             = local.topics.merge_finalise
    DEDUP_TOPIC_OPS_RECONCILE              = local.topics.ops_reconcile
    DEDUP_TOPIC_RESOURCE_CHANGES           = local.topics.resource_changes
    DEDUP_FIRESTORE_DATABASE               = var.firestore_database
    DEDUP_NAME_MATCH_THRESHOLD             = tostring(var.name_match_threshold)
    DEDUP_NAME_REVIEW_THRESHOLD            = tostring(var.name_review_threshold)
    DEDUP_DEMOGRAPHIC_AUTO_MERGE_THRESHOLD = tostring(var.demographic_auto_merge_threshold)
    DEDUP_DEMOGRAPHIC_AUTO_MERGE_ENABLED   = tostring(var.demographic_auto_merge_enabled)
  }, var.extra_settings)

  # Secret env var name -> Secret Manager secret id.
  nik_key_env = tomap({ DEDUP_NIK_HASH_KEY = var.nik_hash_key_secret })
  fhir_token_env = (
    var.fhir_mode == "external" && var.external_fhir_token_secret != null
    ? tomap({ DEDUP_FHIR_BEARER_TOKEN = var.external_fhir_token_secret }) : tomap({})
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
  # The function list (name, entry point, trigger topic or "http") is functions/functions.json, shared
  # with the local pipeline and the tests; here, keyed by its names, what each function may touch and
  # its sizing. publish: keys of local.topics; fhir: the function talks to the FHIR server.
  function_list = jsondecode(file("${path.module}/../../../functions/functions.json")).functions
  topic_keys    = { for key, name in local.topics : name => key }
  function_defaults = {
    match-patient = {
      description   = "Matches a changed patient against the NIK index."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true
      max_instances = 10, concurrency = 8, memory = "512Mi", timeout = 120
    }
    force-merge = {
      description   = "Ops-requested merge of the patients holding one NIK."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true
      max_instances = 2, concurrency = 1, memory = "512Mi", timeout = 300
    }
    merge-fanout = {
      description   = "Opens a merge job and publishes one task per resource type."
      publish       = ["merge_tasks", "merge_finalise"]
      fhir          = true, fhir_role = local.reader, firestore = true, nik_key = true
      max_instances = 3, concurrency = 4, memory = "512Mi", timeout = 120
    }
    merge-worker = {
      description   = "Rewrites references of one resource type to the master."
      publish       = ["merge_finalise"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true
      max_instances = 5, concurrency = 2, memory = "1Gi", timeout = 540
    }
    merge-finaliser = {
      description   = "Links duplicates to the master and closes the merge job."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true
      max_instances = 2, concurrency = 1, memory = "512Mi", timeout = 300
    }
    reconcile = {
      description   = "Rewrites references that reached a duplicate after its merge."
      publish       = []
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true
      max_instances = 1, concurrency = 1, memory = "1Gi", timeout = 540
    }
    late-references = {
      description   = "Rewrites a reference to an already merged duplicate when the resource changes."
      publish       = []
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true
      max_instances = 5, concurrency = 8, memory = "512Mi", timeout = 120
    }
    patient-merge = {
      description   = "FHIR Patient/$merge: an explicit, human-confirmed merge."
      publish       = ["merge_requests"]
      fhir          = true, fhir_role = local.editor, firestore = true, nik_key = true
      max_instances = 2, concurrency = 4, memory = "512Mi", timeout = 120
    }
    subscription-relay = {
      description   = "Republishes FHIR rest-hook notifications to patient-changes or resource-changes."
      publish       = ["patient_changes", "resource_changes"]
      fhir          = false, fhir_role = null, firestore = false, nik_key = false
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
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",            # 2nd gen functions run on Cloud Run
    "cloudscheduler.googleapis.com", # the daily reconcile
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Pub/Sub topics ------------------------------------------------------------------------------------

resource "google_pubsub_topic" "pipeline" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; messages hold resource ids and NIK tokens (ops-force-merge one NIK). CMEK would add a KMS key per district to operate with no stated key-custody requirement.
  for_each = local.topics
  project  = var.project_id
  name     = each.value
  labels   = local.labels
  # Kept a week so a backlog can be replayed (seek) after a bad deployment.
  message_retention_duration = "604800s"

  depends_on = [google_project_service.enabled]
}

# --- FHIR store --------------------------------------------------------------------------------------

# The Healthcare API publishes store changes with its service agent.
resource "google_pubsub_topic_iam_member" "healthcare_notifications" {
  for_each = local.uses_healthcare_api ? toset(["patient_changes", "resource_changes"]) : toset([])
  project  = var.project_id
  topic    = google_pubsub_topic.pipeline[each.key].name
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"

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

  depends_on = [google_pubsub_topic_iam_member.healthcare_notifications]
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

  depends_on = [google_project_service.enabled]
}

# --- NIK hashing key ---------------------------------------------------------------------------------

# Only the secret is managed here; its value is added out of band (README) so it never sits in
# Terraform state. Changing the key re-keys every Firestore document id: never rotate it casually.
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

  depends_on = [google_project_service.enabled]
}

# --- function source and build identity ---------------------------------------------------------------

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the functions' source zips (no patient data, no secrets); access logs would need a second bucket per district for no security gain.
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

  trigger_topic  = each.value.trigger == null ? null : google_pubsub_topic.pipeline[each.value.trigger].name
  publish_topics = toset([for t in each.value.publish : google_pubsub_topic.pipeline[t].name])

  fhir_store_id      = local.fhir_store_id
  fhir_store_role    = each.value.fhir_role
  firestore_database = each.value.firestore ? var.firestore_database : null
  environment        = local.settings
  secret_environment = merge(
    each.value.nik_key ? local.nik_key_env : tomap({}),
    each.value.fhir ? local.fhir_token_env : tomap({}),
  )

  ingress         = each.value.trigger == null ? var.relay_ingress : "ALLOW_INTERNAL_ONLY"
  invoker_members = each.value.trigger == null ? var.relay_invoker_members : []

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
  ]
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

# --- alerting ----------------------------------------------------------------------------------------

module "monitoring" {
  source     = "../monitoring"
  project_id = var.project_id
  district   = var.district
  dead_letter_subscriptions = {
    for name, f in module.function : name => f.dead_letter_subscription if local.functions[name].trigger != null
  }
  function_services      = { for name, f in module.function : name => f.service_name }
  alert_emails           = var.alert_emails
  error_threshold_per_5m = var.error_threshold_per_5m
}
