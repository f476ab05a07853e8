"""The stored form of the index (``index_codec``): members and evidence as JSON text, read back to the
same ``to_doc()`` dict; documents stored before it (nested maps) read the same; the caller's dict is
never changed."""

from __future__ import annotations

import copy
import json

from shared.adapters.index_codec import decode, encode

GROUP = {
    "members": {"p1": {"version": "2", "name": "siti aminah", "score": 6.0, "corroborators": ["phone:ab"],
                       "status": "master", "multiple_birth": None, "active": True},
                "p2": {"version": "1", "name": "sïti", "score": 5.0, "corroborators": [], "status": "duplicate"}},
    "master": "p1",
    "request": {"id": "mr-1", "status": "open", "master": "p1", "duplicates": ["p2"], "published": False,
                "evidence": {"first": {"pairs": [{"patients": ["p1", "p2"], "name_score": 100.0}]}}},
    "previous_request": {"id": "mr-0", "status": "failed", "evidence": {}},
    "do_not_match": ["p1|p3"],
    "confirmed": [],
    "reviews": {"rv-1": ["p1", "p2"]},
    "updated_at": "2026-01-01T00:00:00+00:00",
}
REVIEW = {"reason": "weak-evidence", "group": "nik_index/t", "status": "pending", "patient_ids": ["a", "b"],
          "evidence": {"name_score": 83.3, "fields": {"gender": "agree"}}, "sources": ["simrs"]}


def test_members_and_evidence_are_stored_as_readable_text():
    stored = encode("nik_index", GROUP)
    assert isinstance(stored["members"], str) and "siti aminah" in stored["members"] and "sïti" in stored["members"]
    assert isinstance(stored["request"]["evidence"], str) and isinstance(stored["previous_request"]["evidence"], str)
    assert isinstance(stored["reviews"], str)   # a group's pending review items: read with it, never queried
    # What queries and field updates name stays a Firestore value.
    assert stored["request"]["status"] == "open" and stored["request"]["published"] is False
    assert stored["master"] == "p1" and stored["do_not_match"] == ["p1|p3"]
    assert isinstance(encode("review_items", REVIEW)["evidence"], str)
    assert encode("patient_keys", {"groups": ["nik_index/t"]}) == {"groups": ["nik_index/t"]}


def test_a_stored_document_reads_back_as_it_was_written():
    for collection, doc in (("nik_index", GROUP), ("demographic_index", GROUP), ("review_items", REVIEW)):
        stored = json.loads(json.dumps(encode(collection, doc)))   # through a store that keeps JSON types
        assert decode(collection, stored) == doc


def test_documents_stored_before_the_codec_read_the_same():
    assert decode("nik_index", copy.deepcopy(GROUP)) == GROUP
    assert decode("review_items", copy.deepcopy(REVIEW)) == REVIEW
    assert decode("nik_index", None) is None
    assert decode("nik_index", {**GROUP, "request": None})["request"] is None


def test_the_callers_document_is_never_changed():
    original = copy.deepcopy(GROUP)
    stored = encode("nik_index", GROUP)
    decode("nik_index", stored)
    assert GROUP == original and not isinstance(GROUP["members"], str)
