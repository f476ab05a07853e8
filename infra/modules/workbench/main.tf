# Why Cloud Run with IAP enabled on the service (not a 2nd-gen HTTP function, not a load balancer):
# IAP on the service guards every way in, the run.app URL included, so nothing reaches the app
# without IAP's check; the only invoker is IAP's service agent. No load balancer, domain or
# certificate to run per district. The app verifies IAP's signed header itself as well (audience
# below), so a misconfigured ingress still lets nobody in.

locals {
  # IAP directly on Cloud Run signs its header for this audience (workbench/config.py, iap_audience).
  iap_audience = "/projects/${var.project_number}/locations/${var.region}/services/${var.name}"
  iap_agent    = "serviceAccount:service-${var.project_number}@gcp-sa-iap.iam.gserviceaccount.com"

  environment = merge(var.settings, {
    DEDUP_WORKBENCH_MODE         = "production"
    DEDUP_WORKBENCH_IAP_AUDIENCE = local.iap_audience
    DEDUP_WORKBENCH_ROLES        = jsonencode(var.roles)
  })
  secrets = merge(var.secret_environment, {
    DEDUP_WORKBENCH_SECRET_KEY = { secret = var.session_key_secret, version = var.session_key_version }
  })
}

resource "google_service_account" "workbench" {
  project      = var.project_id
  account_id   = "dedup-workbench"
  display_name = "dedup review workbench"
  description  = "Runs the review workbench: reads FHIR, reads and writes review items, groups and the audit trail, publishes merge requests."
}

# What a decision needs: Firestore (review items, groups, audit), merge-requests (an approval), FHIR
# reads (the records side by side) and, for a supervisor's unmerge, FHIR writes.
resource "google_project_iam_member" "workbench" {
  for_each = toset(["roles/datastore.user", "roles/logging.logWriter"])
  project  = var.project_id
  role     = each.value
  member   = google_service_account.workbench.member
}

resource "google_healthcare_fhir_store_iam_member" "workbench" {
  count         = var.fhir_store_id == null || var.fhir_store_role == null ? 0 : 1
  fhir_store_id = var.fhir_store_id
  role          = var.fhir_store_role
  member        = google_service_account.workbench.member
}

resource "google_pubsub_topic_iam_member" "workbench" {
  project = var.project_id
  topic   = var.merge_requests_topic
  role    = "roles/pubsub.publisher"
  member  = google_service_account.workbench.member
}

resource "google_secret_manager_secret" "session_key" {
  project   = var.project_id
  secret_id = var.session_key_secret
  labels    = var.labels
  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }
}

resource "google_secret_manager_secret_iam_member" "workbench" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = each.value.secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.workbench.member

  depends_on = [google_secret_manager_secret.session_key]
}

resource "google_cloud_run_v2_service" "workbench" {
  #checkov:skip=CKV_GCP_102:IAP is enabled on the service itself (iap_enabled), which guards the run.app URL too; internal-only ingress would shut the clerks out without a load balancer, and the app verifies IAP's signed header on every request.
  project             = var.project_id
  name                = var.name
  location            = var.region
  labels              = var.labels
  ingress             = "INGRESS_TRAFFIC_ALL"
  iap_enabled         = true
  deletion_protection = false

  template {
    service_account = google_service_account.workbench.email
    scaling {
      min_instance_count = 0
      max_instance_count = 2
    }
    dynamic "vpc_access" {
      for_each = var.vpc_connector == null ? [] : [var.vpc_connector]
      content {
        connector = vpc_access.value
        egress    = "PRIVATE_RANGES_ONLY"
      }
    }
    containers {
      image = var.image
      resources {
        limits = { cpu = "1", memory = "512Mi" }
      }
      dynamic "env" {
        for_each = local.environment
        content {
          name  = env.key
          value = env.value
        }
      }
      dynamic "env" {
        for_each = local.secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version # pinned: a new version arrives only through a reviewed plan
            }
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.workbench]
}

# Only IAP may invoke the service: no user, no allUsers.
resource "google_cloud_run_v2_service_iam_member" "iap_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.workbench.name
  role     = "roles/run.invoker"
  member   = local.iap_agent
}

# Who IAP lets through: exactly the users with a workbench role.
resource "google_iap_web_cloud_run_service_iam_member" "users" {
  for_each               = var.roles
  project                = var.project_id
  location               = var.region
  cloud_run_service_name = google_cloud_run_v2_service.workbench.name
  role                   = "roles/iap.httpsResourceAccessor"
  member                 = "user:${each.key}"
}
