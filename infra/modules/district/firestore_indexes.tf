# Composite indexes of the queries the code makes (the emulator needs none, production does):
# REVIEW_QUEUE_INDEXES (shared/adapters/firestore_index.py), MERGE_JOB_INDEXES
# (shared/adapters/merge_jobs.py), AUDIT_INDEXES (shared/adapters/audit.py).
# tests/infra/test_workbench_infra.py holds this file and those constants together.

locals {
  firestore_indexes = {
    review_queue = {
      collection = "review_items"
      fields     = [["status", "ASCENDING"], ["created_at", "ASCENDING"]]
    }
    review_queue_by_reason = {
      collection = "review_items"
      fields     = [["status", "ASCENDING"], ["reason", "ASCENDING"], ["created_at", "ASCENDING"]]
    }
    review_queue_by_source = {
      collection = "review_items"
      fields     = [["status", "ASCENDING"], ["sources", "CONTAINS"], ["created_at", "ASCENDING"]]
    }
    review_queue_by_reason_and_source = {
      collection = "review_items"
      fields     = [["status", "ASCENDING"], ["reason", "ASCENDING"], ["sources", "CONTAINS"], ["created_at", "ASCENDING"]]
    }
    merge_jobs_by_status = {
      collection = "merge_jobs"
      fields     = [["status", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    audit_last_decision = {
      collection = "review_audit"
      fields     = [["actor", "ASCENDING"], ["decision", "ASCENDING"], ["at", "DESCENDING"]]
    }
  }
}

resource "google_firestore_index" "query" {
  for_each   = local.firestore_indexes
  project    = var.project_id
  database   = var.firestore_database
  collection = each.value.collection

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value[0]
      order        = fields.value[1] == "CONTAINS" ? null : fields.value[1]
      array_config = fields.value[1] == "CONTAINS" ? "CONTAINS" : null
    }
  }

  depends_on = [google_firestore_database.dedup]
}
