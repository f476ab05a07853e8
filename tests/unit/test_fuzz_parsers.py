"""Issue 12, item 11: property tests (hypothesis) over every parser of outside input. Each may only
return a value or raise its declared malformed-input error (``MalformedEvent``, ``NikError``); any
other exception fails. ``DEDUP_FUZZ_EXAMPLES`` sets the examples per test (default 1,250: 10,000 in
all over the eight properties, within CI's budget; README "Tests" gives the nightly-style command)."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import Settings
from shared.domain.patient import is_newer, patient_facts
from shared.fhir.ids import is_fhir_id
from shared.fhir.wire import resource_path as request_path
from shared.messages import (
    FinaliseMerge,
    ForceMerge,
    MalformedEvent,
    MergeRequested,
    MergeTask,
    PatientChange,
    ReconcileRun,
    decode,
)
from shared.names import MAX_NAME_CHARS, name_similarity, normalise_name, patient_name
from shared.nik import NikError, normalise_nik, parse_nik
from shared.notifications import parse_patient_change
from shared.services.relay import resource_path as relay_resource_path

SETTINGS = Settings()
EXAMPLES = int(os.environ.get("DEDUP_FUZZ_EXAMPLES", "1250"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MESSAGE_TYPES = [ForceMerge, MergeRequested, MergeTask, FinaliseMerge, ReconcileRun]

# --- strategies -----------------------------------------------------------------------------------
ids = st.one_of(st.sampled_from([".", "..", "...", "a", "p1", "a" * 64, "a" * 65, "../x", "a/b", "", " "]),
                st.text(alphabet="ab09-.Z", min_size=1, max_size=70), st.text(max_size=8))
# (Huge integers travel as JSON text, below: hypothesis cannot print a 5,000-digit int in a report.)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=30), ids)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
nik_texts = st.one_of(st.text(max_size=40), st.text(alphabet="0123456789 .-", max_size=30),
                      st.integers(min_value=0, max_value=6000).map(lambda n: "1" * n),
                      st.builds("{}.{}E{}".format, st.integers(0, 10**30), st.integers(0, 99999),
                                st.integers(-10**12, 10**12)))
identifiers = st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"system": st.sampled_from([SETTINGS.nik_system, SETTINGS.nik_ibu_system, "urn:x"]) | json_values,
     "value": nik_texts | json_values})), max_size=3)
human_names = st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "text": st.text(max_size=60) | json_values, "given": st.lists(st.text(max_size=20)) | json_values,
    "family": st.text(max_size=20) | json_values, "use": st.sampled_from(["official", "usual"]) | json_values})),
    max_size=3) | json_values
metas = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "versionId": ids | json_values, "lastUpdated": st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01T00:00:00",
                                                                   "not a date"]) | json_values,
    "source": st.text(max_size=20) | json_values, "tag": json_values}))
patients = st.fixed_dictionaries({"resourceType": st.sampled_from(["Patient", "Observation"]) | json_values},
                                 optional={"id": ids | json_values, "meta": metas, "identifier": identifiers,
                                           "name": human_names, "birthDate": st.text(max_size=12) | json_values,
                                           "gender": st.sampled_from(["male", "female"]) | json_values,
                                           "telecom": json_values, "address": json_values, "link": json_values,
                                           "active": json_values, "multipleBirthInteger": json_values})
entries = st.lists(st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "resource": patients | json_values, "fullUrl": st.builds(lambda i: f"http://x/fhir/Patient/{i}", ids) | json_values,
    "request": st.fixed_dictionaries({}, optional={"method": st.sampled_from(["PUT", "DELETE"]) | json_values,
                                                   "url": json_values}) | json_values})), max_size=4)
bundles = st.fixed_dictionaries({"resourceType": st.just("Bundle")}, optional={"entry": entries | json_values})
deep = st.integers(min_value=1, max_value=3_000)  # past the interpreter's recursion limit (1,000)
deep = deep.map(lambda n: "[" * n + "]" * n)
huge_numbers = st.sampled_from(["nik", "id", "versionId", "job_id", "full", "meta"]).map(
    lambda key: f'{{"resourceType": "Patient", "{key}": {"1" * 5000}}}')
bodies = st.one_of(
    st.binary(max_size=200), deep.map(str.encode), huge_numbers.map(str.encode),
    st.one_of(patients, bundles, json_values).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda i, v: f"projects/p/locations/l/datasets/d/fhirStores/s/fhir/Patient/{i}"
              + (f"/_history/{v}" if v else ""), ids, st.none() | ids).map(str.encode))
attribute_sets = st.one_of(
    st.fixed_dictionaries({"source": st.just("fhir-subscription")}, optional={
        "httpMethod": st.sampled_from(["PUT", "POST", "DELETE", "x"]),
        "resourcePath": st.builds(lambda t, i: f"{t}/{i}", st.sampled_from(["Patient", "Observation"]), ids)}),
    st.fixed_dictionaries({}, optional={"action": st.sampled_from(["CreateResource", "DeleteResource", "x"]),
                                        "resourceType": st.sampled_from(["Patient", "Encounter"])}),
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3), json_values)


@st.composite
def cloud_event_data(draw):
    """What a Pub/Sub push can put in a CloudEvent's data, and what a broken or hostile one can."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    data = draw(bodies)
    raw = draw(st.one_of(st.just(base64.b64encode(data).decode()), st.just(data), json_values,
                         st.text(max_size=20)))
    return {"message": {"data": raw, "attributes": draw(attribute_sets), "messageId": draw(json_values)}}


# --- properties -----------------------------------------------------------------------------------
@fuzz
@given(event=cloud_event_data(), trusted=st.booleans())
def test_patient_changes_decode_or_raise_malformed(event, trusted):
    try:
        parsed = parse_patient_change(event, trust_healthcare_api=trusted)
    except MalformedEvent:
        return
    for change in [] if not isinstance(parsed, list) else parsed:
        assert isinstance(change, PatientChange) and is_fhir_id(change.patient_id)
        assert change.version is None or is_fhir_id(change.version)
        assert change.action in ("upsert", "delete")
        assert not change.trusted or (trusted and change.source == "healthcare-api")


@fuzz
@given(event=cloud_event_data(), message_type=st.sampled_from(MESSAGE_TYPES))
def test_every_message_type_decodes_or_raises_malformed(event, message_type):
    try:
        message = decode(event, message_type)
    except MalformedEvent:
        return
    assert type(message).from_json(message.to_json()) == message  # what decodes, round-trips


@fuzz
@given(body=st.one_of(json_values, st.dictionaries(st.sampled_from(
    ["nik", "reason", "requested_by", "patient_ids", "request_id", "group", "nik_token", "master", "duplicates",
     "evidence", "job_id", "resource_type", "resources", "full"]), json_values | st.lists(ids)), deep,
    huge_numbers),
       message_type=st.sampled_from(MESSAGE_TYPES))
def test_every_message_type_from_json_raises_only_malformed(body, message_type):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    try:
        message_type.from_json(data)
    except MalformedEvent:
        pass


@fuzz
@given(raw=st.one_of(nik_texts, st.integers(), json_values))
def test_nik_parsers_raise_only_nik_error(raw):
    for parser in (normalise_nik, parse_nik):
        try:
            parser(raw)
        except NikError:
            pass


@fuzz
@given(a=st.text(max_size=400) | json_values, b=st.text(max_size=400))
def test_name_normalisation_and_scoring_never_fail(a, b):
    normalise_name(a)
    assert 0.0 <= name_similarity(a, b) <= 100.0


@fuzz
@given(resource=patients | json_values, stored=json_values)
def test_patient_facts_read_any_json_resource(resource, stored):
    facts = patient_facts(resource, SETTINGS)
    patient_name(resource)
    is_newer(facts.version, facts.last_updated, stored if isinstance(stored, dict) else None)


@fuzz
@given(path=st.one_of(st.text(max_size=80), st.builds(lambda p, t, i: f"{p}/{t}/{i}", st.text(max_size=10),
                                                      st.sampled_from(["Patient", "Observation", "patient"]), ids)))
def test_relay_path_parsing_yields_only_fhir_ids(path):
    parsed = relay_resource_path(path)
    assert parsed is None or is_fhir_id(parsed[1])


@fuzz
@given(resource_type=st.text(max_size=12) | json_values, id=ids | json_values, version=st.none() | ids)
def test_request_paths_refuse_what_is_not_a_type_or_an_id(resource_type, id, version):
    try:
        path = request_path(resource_type, id, version)
    except ValueError:
        return
    if id is None:   # the type's own path (a search or a create)
        assert path == resource_type and version is None
        return
    assert is_fhir_id(id) and ".." not in path.split("/")


# --- the audit's examples, as plain tests ---------------------------------------------------------
@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_ids_are_refused_everywhere(bad):
    assert not is_fhir_id(bad)
    name = f"projects/p/locations/l/datasets/d/fhirStores/s/fhir/Patient/{bad}".encode()
    for data, attributes in ((name, {"action": "DeleteResource"}),
                             (b"", {"source": "fhir-subscription", "httpMethod": "DELETE",
                                    "resourcePath": f"Patient/{bad}"}),
                             (json.dumps({"resourceType": "Patient", "id": bad}).encode(),
                              {"source": "fhir-subscription", "httpMethod": "DELETE"})):
        event = {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes}}
        try:
            parsed = parse_patient_change(event)
        except MalformedEvent:
            continue
        assert not isinstance(parsed, list), f"{bad!r} read as a patient id"
    assert relay_resource_path(f"/Patient/{bad}") is None
    with pytest.raises(ValueError):
        request_path("Patient", bad)
    with pytest.raises(MalformedEvent):
        ForceMerge.from_json(json.dumps({"nik": "1", "reason": "r", "requested_by": "o",
                                         "patient_ids": [bad]}).encode())


def test_a_5000_digit_nik_raises_nik_error():
    for raw in ("1" * 5000, 10**5000):
        with pytest.raises(NikError):
            parse_nik(raw)


def test_deeply_nested_json_is_malformed_not_a_crash():
    event = {"message": {"data": base64.b64encode(b"[" * 100_000).decode(),
                         "attributes": {"source": "fhir-subscription"}}}
    with pytest.raises(MalformedEvent):
        parse_patient_change(event)


def test_long_names_are_scored_on_their_first_characters_quickly():
    long_a, long_b = "budi santoso " * 800, "budi santosa " * 800  # 10,400 characters each
    started = time.perf_counter()
    score = name_similarity(long_a, long_b)
    assert time.perf_counter() - started < 0.5
    assert score == name_similarity(long_a[:MAX_NAME_CHARS], long_b[:MAX_NAME_CHARS])
