"""Reference finding/rewriting: every form, anywhere in the tree, nothing else touched."""

import copy
import json
import random

import pytest

from shared.fhir.references import (
    path_text,
    patient_id_of,
    patient_references,
    references_any,
    rewrite_patient_references,
    without_meta,
)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/d1", "d1"),
        ("Patient/d1/_history/3", "d1"),
        ("http://fhir.example.org/fhir/Patient/d1", "d1"),
        ("https://host:8443/base/r4/Patient/a-b.c/_history/12", "a-b.c"),
        ("Practitioner/d1", None),
        ("#contained-1", None),
        ("Patient", None),
        ("Patient/", None),
        ("urn:uuid:1234", None),
        ("Patient/d1?x=1", None),
        ("http://example.org/fhir/PatientX/d1", None),
    ],
)
def test_patient_id_of_accepts_every_reference_form(reference, expected):
    assert patient_id_of(reference) == expected


def test_rewrite_keeps_the_form_and_drops_the_duplicates_version():
    resource = {
        "resourceType": "Observation", "id": "o1",
        "subject": {"reference": "Patient/d1", "display": "keep me"},
        "performer": [{"reference": "http://srv/fhir/Patient/d2/_history/4"}, {"reference": "Practitioner/p"}],
        "extension": [{"url": "x", "valueReference": {"reference": "Patient/d1/_history/2"}}],
        "contained": [{"resourceType": "Provenance", "target": [{"reference": "Patient/d2"}]}],
        "focus": [{"reference": "Patient/other"}],
    }
    rewritten, changes = rewrite_patient_references(resource, {"d1": "m", "d2": "m"})
    assert rewritten["subject"] == {"reference": "Patient/m", "display": "keep me"}
    assert rewritten["performer"] == [{"reference": "http://srv/fhir/Patient/m"}, {"reference": "Practitioner/p"}]
    assert rewritten["extension"][0]["valueReference"]["reference"] == "Patient/m"
    assert rewritten["contained"][0]["target"][0]["reference"] == "Patient/m"
    assert rewritten["focus"] == [{"reference": "Patient/other"}]
    assert sorted(path_text(c.path) for c in changes) == [
        "contained[0].target[0].reference", "extension[0].valueReference.reference",
        "performer[0].reference", "subject.reference"]
    assert resource["subject"]["reference"] == "Patient/d1", "input must not be modified"
    assert not references_any(rewritten, ["d1", "d2"])


def test_no_match_returns_an_equal_copy_and_no_changes():
    resource = {"resourceType": "Encounter", "id": "e", "subject": {"reference": "Patient/m"}}
    rewritten, changes = rewrite_patient_references(resource, {"d1": "m"})
    assert changes == [] and rewritten == resource and rewritten is not resource


def _random_tree(rng: random.Random, depth: int = 0):
    kind = rng.random()
    if depth > 3 or kind < 0.3:
        return rng.choice(["x", 1, 2.5, True, None, "Patient/d1", "reference"])
    if kind < 0.55:
        return [_random_tree(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    node = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(["subject", "performer", "code", "valueReference", "extension", "text", "id", "display"])
        node[key] = _random_tree(rng, depth + 1)
    if rng.random() < 0.4:
        node["reference"] = rng.choice(
            ["Patient/d1", "Patient/d2/_history/7", "https://h/fhir/Patient/d1", "Patient/keep",
             "Organization/d1", "Patient/d1x"])
    return node


def _set(tree, path, value):
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


@pytest.mark.parametrize("seed", range(300))
def test_property_only_duplicate_references_change(seed):
    rng = random.Random(seed)
    resource = {"resourceType": "Observation", "id": f"o{seed}", **{"a": _random_tree(rng), "b": _random_tree(rng)}}
    original = copy.deepcopy(resource)
    replacements = {"d1": "m", "d2": "m"}
    rewritten, changes = rewrite_patient_references(resource, replacements)

    assert resource == original
    # 1. no reference to a duplicate is left, and references to others are untouched
    assert not references_any(rewritten, replacements)
    # 2. undoing exactly the reported changes gives back the input byte for byte
    undone = copy.deepcopy(rewritten)
    for change in changes:
        _set(undone, change.path, change.before)
    assert json.dumps(undone, sort_keys=True) == json.dumps(original, sort_keys=True)
    # 3. every change points a duplicate reference at the master and nothing else
    for change in changes:
        assert patient_id_of(change.before) in replacements and patient_id_of(change.after) == "m"
    # 4. idempotent
    again, more = rewrite_patient_references(rewritten, replacements)
    assert more == [] and again == rewritten


def test_patient_references_lists_every_occurrence():
    resource = {"a": [{"reference": "Patient/x"}, {"b": {"reference": "Patient/y/_history/1"}}],
                "reference": "not-a-reference-element"}
    assert [(path_text(p), pid) for p, pid in patient_references(resource)] == [
        ("a[0].reference", "x"), ("a[1].b.reference", "y")]


def test_without_meta_drops_only_server_fields():
    resource = {"id": "1", "meta": {"versionId": "3", "lastUpdated": "t", "tag": [{"code": "c"}]}}
    assert without_meta(resource) == {"id": "1", "meta": {"tag": [{"code": "c"}]}}
    assert without_meta({"id": "1", "meta": {"versionId": "3"}}) == {"id": "1"}
