"""The stored form of the matching index on Firestore: one codec for the live path's adapter
(``firestore_index``) and the batch backfill's (``firestore_bulk``), so both read and write the same
documents.

A group's ``members`` and every ``evidence`` (a request's, a review item's) are stored as one JSON text
field each instead of nested maps. Firestore indexes every field of every nested map by default: a group
of two members was ~40 index entries, and the emulator committed 1,300-1,500 such documents/s against
~14,000/s for the same document as one text field (``docs/benchmarks.md``, "Batch backfill"); the client
spent 0.6 ms of CPU encoding each (0.05 ms as text). These fields are never queried: production exempts
them from indexing as well (``UNINDEXED_FIELDS`` below, declared in
``infra/modules/district/firestore_fields.tf``; ``tests/infra/test_index_codec_infra.py`` holds the two
together). Everything a query or a field-mask update names stays a Firestore value: ``request.status``
(the sweeper), ``request.published`` (publishing), the review queue's fields.

The text is compact JSON with sorted keys and readable characters: ops reading a document in the console
still sees the members. Reading accepts both forms, so documents written before this codec (nested maps)
decode to the same ``to_doc()`` dict, and are rewritten in this form at their next write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_GROUP_TEXT = ("members", "request.evidence", "previous_request.evidence", "reviews")

# Collection -> field paths stored as JSON text.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "nik_index": _GROUP_TEXT,
    "demographic_index": _GROUP_TEXT,
    "review_items": ("evidence",),
}

# Collection -> fields no query ever names: exempt from Firestore's single-field indexes in production.
# The text fields, and the arrays and the earlier request that only the document's own reader looks at
# (``reviews``: a group's pending review items and their records, read with the group, never queried).
_GROUP_UNINDEXED = ("members", "request.evidence", "request.closed_reviews", "previous_request", "do_not_match",
                    "confirmed", "released", "reviews")
UNINDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "nik_index": _GROUP_UNINDEXED,
    "demographic_index": _GROUP_UNINDEXED,
    "review_items": ("evidence", "patient_ids"),
    "patient_keys": ("groups", "linked"),
}


def _text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _value(stored: Any) -> Any:
    return json.loads(stored) if isinstance(stored, str) else stored


def _convert(doc: Mapping, path: str, convert) -> dict:
    """A shallow copy of ``doc`` with the value at the dotted ``path`` converted (absent: unchanged);
    the maps along the path are copied, never changed in place."""
    head, _, rest = path.partition(".")
    out = dict(doc)
    if head not in out:
        return out
    if rest:
        if isinstance(out[head], Mapping):
            out[head] = _convert(out[head], rest, convert)
    else:
        out[head] = convert(out[head])
    return out


def encode(collection: str, doc: Mapping) -> dict:
    """A ``to_doc()`` dict -> the fields written to Firestore."""
    out = dict(doc)
    for path in TEXT_FIELDS.get(collection, ()):
        out = _convert(out, path, _text)
    return out


def decode(collection: str, stored: Mapping | None) -> dict | None:
    """The fields read from Firestore (either form) -> the ``to_doc()`` dict."""
    if stored is None:
        return None
    out = dict(stored)
    for path in TEXT_FIELDS.get(collection, ()):
        out = _convert(out, path, _value)
    return out
