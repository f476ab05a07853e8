# A Cloud Run Job on the ops image (infra/backfill.Dockerfile): the district's batch backfill
# (backfill_job.tf) and its scheduled model retraining (model_store.tf). One task, the district's
# settings as plain variables and its secrets from Secret Manager at pinned versions, Cloud Storage
# buckets mounted through FUSE. The service account and what it may touch stay with the caller: each
# job's grants are its own.

resource "google_cloud_run_v2_job" "job" {
  project             = var.project_id
  name                = var.name
  location            = var.region
  labels              = var.labels
  deletion_protection = false

  template {
    task_count  = 1
    parallelism = 1
    template {
      service_account = var.service_account_email
      timeout         = "${var.timeout_seconds}s"
      max_retries     = var.max_retries
      containers {
        image   = var.image
        command = var.command
        resources {
          limits = { cpu = tostring(var.cpu), memory = var.memory }
        }
        dynamic "env" {
          for_each = var.environment
          content {
            name  = env.key
            value = env.value
          }
        }
        dynamic "env" {
          for_each = var.secret_environment
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value.secret
                version = env.value.version
              }
            }
          }
        }
        dynamic "volume_mounts" {
          for_each = var.buckets
          content {
            name       = volume_mounts.value.name
            mount_path = volume_mounts.value.mount_path
          }
        }
      }
      dynamic "volumes" {
        for_each = var.buckets
        content {
          name = volumes.value.name
          gcs {
            bucket    = volumes.value.bucket
            read_only = volumes.value.read_only
          }
        }
      }
      dynamic "vpc_access" {
        for_each = var.vpc_connector == null ? [] : [var.vpc_connector]
        content {
          connector = vpc_access.value
          egress    = "PRIVATE_RANGES_ONLY"
        }
      }
    }
  }
}
