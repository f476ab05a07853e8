"""A group's document shares no state with the ``Group`` (``shared.domain.documents``), so every
repository sees an in-place change as a change: the cause of issue 13's batch/incremental divergence,
where a second evidence entry appended to an open request (same master and duplicates) was kept by the
in-memory index and silently not written by the fakes and Firestore (their ``before`` snapshot held
the same evidence list)."""

from __future__ import annotations

import pytest

from shared.adapters.memory_index import MemoryGroups, MemoryReviewItems
from shared.domain.group import Group
from shared.domain.merge_request import RequestPlan
from tests.fakes import InMemoryGroups

GROUP = "nik_index/tok"
FIRST = {"pairs": [{"patients": ["a", "b"], "rule": "nik-match"}]}
CROSS = {"pairs": [{"patients": ["b", "c"], "rule": "model-match"}]}


def open_group() -> Group:
    group = Group(GROUP, members={pid: {"status": "active", "nik_issues": []} for pid in "abc"})
    group.open_request(RequestPlan("a", ("b", "c"), "nik-match", "matching", FIRST))
    return group


def test_an_evidence_entry_joining_the_open_request_changes_the_document():
    group = open_group()
    before = group.to_doc()
    request = group.open_request(RequestPlan("a", ("c",), "demographic-match", "matching", CROSS))
    assert request.duplicates == ["b", "c"]            # nobody new: only the evidence grows
    assert group.to_doc() != before and request.evidence["joined"] == [CROSS]


def test_nested_state_is_never_shared_between_a_group_and_its_documents():
    group = open_group()
    doc = group.to_doc()
    group.members["a"]["nik_issues"].append("nik-gender-mismatch")
    group.request.evidence["first"]["pairs"].append({"patients": ["a", "c"]})
    assert doc["members"]["a"]["nik_issues"] == [] and len(doc["request"]["evidence"]["first"]["pairs"]) == 1
    loaded = Group.from_doc(GROUP, doc)
    loaded.request.evidence["first"]["pairs"].clear()
    loaded.members["b"]["nik_issues"].append("x")
    assert len(doc["request"]["evidence"]["first"]["pairs"]) == 1 and doc["members"]["b"]["nik_issues"] == []


@pytest.mark.parametrize("repository", [lambda: InMemoryGroups(), lambda: MemoryGroups(MemoryReviewItems())],
                         ids=["fakes", "memory-index"])
def test_every_repository_writes_an_evidence_only_change(repository):
    groups = repository()
    groups.transact(GROUP, lambda tx: _seed(tx.group))
    groups.transact(GROUP, lambda tx: tx.group.open_request(RequestPlan("a", ("c",), "demographic-match",
                                                                        "matching", CROSS)))
    assert groups.get(GROUP).request.evidence["joined"] == [CROSS]


def _seed(group: Group) -> None:
    group.members.update(open_group().members)
    group.open_request(RequestPlan("a", ("b", "c"), "nik-match", "matching", FIRST))


def test_a_copy_is_the_document_loaded_again_and_shares_nothing():
    """``Group.copy`` (the in-memory index's transactions) is ``from_doc(to_doc())`` in one pass."""
    group = open_group()
    group.master = "a"
    group.do_not_match, group.confirmed, group.released = {"b|c"}, {"a|b"}, ["req-old"]
    group.reviews = {"r2": ["c", "b"], "r1": ["a", "c"]}
    group.updated_at = "2026-01-01T00:00:00+00:00"
    group.previous_request = open_group().request
    for original in (group, Group(GROUP), Group(GROUP, members={"a": {"status": "active"}}, updated_at="")):
        copied, loaded = original.copy(), Group.from_doc(GROUP, original.to_doc())
        assert copied == loaded and copied.to_doc() == original.to_doc()
        assert list(copied.reviews) == list(loaded.reviews)        # the same order, not only equal
    before = group.to_doc()
    copied = group.copy()
    copied.members["a"]["nik_issues"].append("x")
    copied.request.evidence["first"]["pairs"].clear()
    copied.previous_request.duplicates.append("d")
    copied.do_not_match.add("a|c")
    copied.reviews["r1"].append("d")
    copied.released.append("req-new")
    assert group.to_doc() == before
