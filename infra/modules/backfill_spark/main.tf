# --- the batch backfill on Spark: a Dataproc Serverless batch (documented, not applied by default) ---
#
# For stores beyond one machine (a provincial or national consolidation): the same `dedup backfill` as the
# district's Cloud Run Job (infra/modules/district/backfill_job.tf), with `--engine spark`, so Splink
# scores the candidate pairs on the batch's Spark executors with the district's current model (read from
# its model bucket, DEDUP_MODEL_STORE in var.settings); reading, deciding (the production MatchingService,
# in one process per driver core: --decide-workers), writing the index and publishing stay on the driver,
# as in the job. The driver runs
# infra/spark/backfill_main.py from var.code_bucket: it reads the NIK key from Secret Manager (pinned
# version) into the environment, then runs the ops CLI with var's args below; the code (shared/, ops/) is
# dedup-code.zip in the same bucket, the dependencies are in var.container_image (requirements.txt and
# requirements-ops.txt, no Spark: the runtime brings it). Settings: the functions' own (var.settings).
#
# Creating a google_dataproc_batch runs it, so the batch exists only while var.run_batch is true; the
# service account and its roles are always there. Work files (read spool, scores, decisions) are on the
# driver's disk, encrypted with var.kms_key; Spark's checkpoints under gs://<code_bucket>/checkpoints.
locals {
  # The CLI's options (tests/infra/test_backfill_spark.py holds them to ops/cli.py's backfill).
  backfill_args = ["backfill", "--engine", "spark", "--work-dir", "/tmp/backfill", "--decide-workers",
  tostring(var.driver_cores), "--json"]
  driver_env = merge(var.settings, {
    DEDUP_SPARK_CHECKPOINT_DIR        = "gs://${var.code_bucket}/checkpoints"
    DEDUP_NIK_HASH_KEY_SECRET_VERSION = var.nik_hash_key_secret_version
  })
}

resource "google_service_account" "backfill_spark" {
  project      = var.project_id
  account_id   = "dedup-backfill-spark"
  display_name = "dedup backfill on Spark (Dataproc Serverless)"
  description  = "Runs the batch backfill's Dataproc Serverless batch; roles on single resources where the API allows."
}

# What a Dataproc Serverless batch's account needs to run at all (the service's own staging and logs).
resource "google_project_iam_member" "backfill_spark_dataproc_worker" {
  project = var.project_id
  role    = "roles/dataproc.worker"
  member  = google_service_account.backfill_spark.member
}

resource "google_storage_bucket_iam_member" "backfill_spark_code" {
  bucket = var.code_bucket
  role   = "roles/storage.objectUser" # reads the code, writes the checkpoints
  member = google_service_account.backfill_spark.member
}

resource "google_project_iam_member" "backfill_spark_firestore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.backfill_spark.member
  condition {
    title       = "dedup-database-only"
    description = "Only the deduplication database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

# The current model (the pointer and the version it names); the model bucket is CMEK-encrypted by the
# Storage service agent, so reading needs no key role here.
resource "google_storage_bucket_iam_member" "backfill_spark_reads_models" {
  bucket = var.model_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.backfill_spark.member
}

resource "google_pubsub_topic_iam_member" "backfill_spark_publishes_merge_requests" {
  project = var.project_id
  topic   = var.merge_requests_topic
  role    = "roles/pubsub.publisher"
  member  = google_service_account.backfill_spark.member
}

resource "google_healthcare_fhir_store_iam_member" "backfill_spark_reads_fhir" {
  count         = var.fhir_store_id == null || var.fhir_reader_role == null ? 0 : 1
  fhir_store_id = var.fhir_store_id
  role          = var.fhir_reader_role
  member        = google_service_account.backfill_spark.member
}

resource "google_secret_manager_secret_iam_member" "backfill_spark_nik_key" {
  project   = var.project_id
  secret_id = var.nik_hash_key_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.backfill_spark.member
}

resource "google_dataproc_batch" "backfill" {
  count    = var.run_batch ? 1 : 0
  project  = var.project_id
  location = var.region
  batch_id = var.batch_id
  labels   = var.labels

  runtime_config {
    version         = var.runtime_version
    container_image = var.container_image
    properties = merge({ for name, value in local.driver_env : "spark.dataproc.driverEnv.${name}" => value },
    { "spark.driver.cores" = tostring(var.driver_cores) })
  }

  environment_config {
    execution_config {
      service_account = google_service_account.backfill_spark.email
      subnetwork_uri  = var.subnetwork_uri
      kms_key         = var.kms_key
      ttl             = var.ttl
    }
  }

  pyspark_batch {
    main_python_file_uri = "gs://${var.code_bucket}/backfill_main.py"
    python_file_uris     = ["gs://${var.code_bucket}/dedup-code.zip"]
    args                 = local.backfill_args
  }

  depends_on = [google_secret_manager_secret_iam_member.backfill_spark_nik_key,
  google_project_iam_member.backfill_spark_dataproc_worker, google_storage_bucket_iam_member.backfill_spark_code]
}
