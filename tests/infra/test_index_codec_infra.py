"""The index fields the code stores unindexed (``index_codec.UNINDEXED_FIELDS``) are the ones Terraform
exempts from Firestore's single-field indexes, and none of them is a field a query names."""

from __future__ import annotations

from shared.adapters.audit import AUDIT_INDEXES
from shared.adapters.firestore_index import REVIEW_QUEUE_INDEXES
from shared.adapters.index_codec import TEXT_FIELDS, UNINDEXED_FIELDS
from shared.adapters.merge_jobs import MERGE_JOB_INDEXES

# Fields the code filters or orders on outside the composite indexes (single-field queries).
SINGLE_FIELD_QUERIES = {("nik_index", "request.status"), ("demographic_index", "request.status"),
                        ("review_items", "group"), ("review_items", "status")}


def test_terraform_exempts_exactly_the_unindexed_fields(modules):
    declared = modules["district"].locals["unindexed_fields"]
    assert {c: sorted(f) for c, f in declared.items()} == {c: sorted(f) for c, f in UNINDEXED_FIELDS.items()}
    field = modules["district"].resources_of("google_firestore_field")["unindexed"]
    assert field["index_config"] in ({}, [{}], [])   # empty: no index of any kind


def test_no_queried_field_is_exempt():
    composite = {(collection, name) for constants in (REVIEW_QUEUE_INDEXES, MERGE_JOB_INDEXES, AUDIT_INDEXES)
                 for collection, indexes in constants.items() for fields in indexes for name, _ in fields}
    unindexed = {(collection, name) for collection, names in UNINDEXED_FIELDS.items() for name in names}
    covered = {(c, n) for c, n in composite | SINGLE_FIELD_QUERIES
               for uc, un in unindexed if uc == c and (n == un or n.startswith(un + "."))}
    assert covered == set()


def test_every_text_field_is_unindexed():
    for collection, paths in TEXT_FIELDS.items():
        for path in paths:
            assert any(path == f or path.startswith(f + ".") for f in UNINDEXED_FIELDS[collection]), path
