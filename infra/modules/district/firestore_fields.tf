# Single-field index exemptions: fields no query names, so Firestore builds no index entries for them.
# The matching index's bulk is there (a group's members and a request's evidence, stored as JSON text
# by shared/adapters/index_codec.py; the do-not-match and confirmed pair lists; a patient's groups):
# without the exemption every group write also writes an index entry for each of them.
# UNINDEXED_FIELDS (shared/adapters/index_codec.py); tests/infra/test_index_codec_infra.py holds the two
# together. Queried fields (request.status, the review queue's) keep their indexes.

locals {
  unindexed_fields = {
    nik_index         = ["members", "request.evidence", "request.closed_reviews", "previous_request", "do_not_match", "confirmed", "released", "reviews"]
    demographic_index = ["members", "request.evidence", "request.closed_reviews", "previous_request", "do_not_match", "confirmed", "released", "reviews"]
    review_items      = ["evidence", "patient_ids"]
    patient_keys      = ["groups", "linked"]
  }
  unindexed = merge([
    for collection, fields in local.unindexed_fields : {
      for field in fields : "${collection}.${field}" => { collection = collection, field = field }
    }
  ]...)
}

resource "google_firestore_field" "unindexed" {
  for_each   = local.unindexed
  project    = var.project_id
  database   = var.firestore_database
  collection = each.value.collection
  field      = each.value.field

  # Empty: no ascending, descending or array-contains index for this field.
  index_config {}

  depends_on = [google_firestore_database.dedup]
}
