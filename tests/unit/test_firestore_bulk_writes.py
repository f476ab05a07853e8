"""The bulk adapter's ``Write`` messages, built as plain protobufs for speed, equal the ones the client
library builds: ``create`` for a new document; for an existing one, the client's whole-document ``set``
with the ``update_time`` precondition the client's ``update`` would carry."""

from __future__ import annotations

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import write as write_types

from shared.adapters.firestore_bulk import _by_size, value_pb, write_pb
from shared.adapters.index_codec import encode

PATH = "projects/p/databases/(default)/documents/nik_index/t"
DOC = encode("nik_index", {
    "members": {"a": {"version": "1", "score": 6.0, "active": True, "multiple_birth": None,
                      "corroborators": ["phone:x"], "nik_issues": []}},
    "master": None, "request": {"id": "mr-1", "status": "open", "duplicates": ["b"], "published": True,
                                "sweeps": 2, "evidence": {"first": {}}},
    "do_not_match": [], "confirmed": ["a|b"], "updated_at": "2026-01-01T00:00:00+00:00", "empty": {}})


def test_a_create_is_the_clients_create():
    (client,) = _helpers.pbs_for_create(PATH, DOC)
    assert write_types.Write.pb(client) == write_pb(PATH, DOC, None)


def test_a_replacement_is_the_clients_set_under_the_update_time_read():
    version = "2026-01-02T03:04:05.123456Z"
    (client,) = _helpers.pbs_for_set_no_merge(PATH, DOC)
    _helpers.LastUpdateOption(DatetimeWithNanoseconds.from_rfc3339(version)).modify_write(client)
    assert write_types.Write.pb(client) == write_pb(PATH, DOC, version)


def test_values_the_index_never_holds_are_refused():
    with pytest.raises(TypeError):
        value_pb({1, 2})


def test_commits_stay_under_the_request_size_limit():
    # 500 groups of a large district's birth date blocks (~11 KB each) do not fit one request.
    assert _by_size(list(range(500)), [11_000] * 500, limit=3 << 20) == [list(range(285)), list(range(285, 500))]
    assert _by_size([0, 2, 3], [5, 99, 20, 1], limit=10) == [[0], [2], [3]]   # one larger than the limit: alone
    assert _by_size([0, 1, 3], [4, 6, 99, 1], limit=10) == [[0, 1], [3]]
    assert _by_size([], [], limit=10) == []
