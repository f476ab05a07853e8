"""Parsing Pub/Sub events (Healthcare API notifications, relayed Subscriptions, ops commands)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.messages import (
    ForceMerge,
    Ignored,
    MalformedEvent,
    PatientChange,
    decode,
)
from shared.notifications import parse_patient_change

NAME = "projects/p/locations/l/datasets/d/fhirStores/s/fhir/Patient/abc-1"


def push(data: bytes | str, **attributes) -> dict:
    raw = data.encode() if isinstance(data, str) else data
    return {"message": {"data": base64.b64encode(raw).decode(), "attributes": attributes, "messageId": "42"},
            "subscription": "projects/p/subscriptions/s"}


def test_healthcare_name_only_notification():
    parsed = parse_patient_change(push(NAME, action="CreateResource", resourceType="Patient",
                                       payloadType="NameOnly"))
    assert parsed == [PatientChange("abc-1", "upsert", None, None, "healthcare-api")]


def test_healthcare_history_version_in_name():
    parsed = parse_patient_change(push(NAME + "/_history/7", action="UpdateResource", resourceType="Patient"))
    assert parsed[0].version == "7" and parsed[0].resource is None


def test_healthcare_delete():
    parsed = parse_patient_change(push(NAME, action="DeleteResource", resourceType="Patient"))
    assert parsed[0].action == "delete"


def test_healthcare_full_resource():
    resource = {"resourceType": "Patient", "id": "abc-1", "meta": {"versionId": "3"}, "gender": "male"}
    parsed = parse_patient_change(push(json.dumps(resource), action="UpdateResource", resourceType="Patient",
                                       payloadType="FullResource"))
    assert parsed[0].version == "3" and parsed[0].resource == resource


def test_other_resource_types_ignored_before_decoding():
    assert parse_patient_change(push("not even base64 checked", resourceType="Observation")) == Ignored("not-patient")
    obs = NAME.replace("Patient", "Observation")
    assert parse_patient_change(push(obs, action="CreateResource")) == Ignored("not-patient")


@pytest.mark.parametrize("event,reason", [
    ({}, "no-message"),
    ({"message": "x"}, "no-message"),
    ({"message": {"data": "%%%notbase64", "attributes": {}}}, "bad-base64"),
    (push(""), "empty-data"),
    (push("projects/p/whatever"), "bad-resource-name"),
    (push("{not json"), "bad-json"),
    (push(json.dumps({"resourceType": "Patient", "id": "bad id!"})), "bad-id"),
])
def test_malformed_events_have_reason_codes(event, reason):
    with pytest.raises(MalformedEvent) as caught:
        parse_patient_change(event)
    assert caught.value.reason == reason


def test_relayed_rest_hook_full_resource_and_id_only():
    resource = {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "2"}, "name": [{"text": "x"}]}
    parsed = parse_patient_change(push(json.dumps(resource), source="fhir-subscription", httpMethod="PUT"))
    assert parsed[0].resource == resource and parsed[0].source == "fhir-subscription"
    stub = {"resourceType": "Patient", "id": "p1"}
    parsed = parse_patient_change(push(json.dumps(stub), source="fhir-subscription"))
    assert parsed[0].resource is None


def test_relayed_empty_ping():
    assert parse_patient_change(push("", source="fhir-subscription")) == Ignored("ping")
    parsed = parse_patient_change(push("", source="fhir-subscription", resourcePath="Patient/p9"))
    assert parsed == [PatientChange("p9", "upsert", None, None, "fhir-subscription")]


def test_relayed_r4b_notification_bundle():
    bundle = {"resourceType": "Bundle", "type": "subscription-notification", "entry": [
        {"resource": {"resourceType": "SubscriptionStatus", "type": "event-notification"}},
        {"fullUrl": "http://x/fhir/Patient/p1/_history/4"},
        {"resource": {"resourceType": "Patient", "id": "p2", "meta": {"versionId": "1"}, "gender": "male"}},
        {"resource": {"resourceType": "Observation", "id": "o1"}},
    ]}
    parsed = parse_patient_change(push(json.dumps(bundle), source="fhir-subscription"))
    assert [(c.patient_id, c.version, c.resource is None) for c in parsed] == [("p1", "4", True), ("p2", "1", False)]


def test_relayed_r4_backport_history_bundle_with_delete_and_handshake():
    bundle = {"resourceType": "Bundle", "type": "history", "entry": [
        {"resource": {"resourceType": "Parameters", "parameter": []}},
        {"fullUrl": "Patient/p3", "request": {"method": "DELETE", "url": "Patient/p3"}},
    ]}
    parsed = parse_patient_change(push(json.dumps(bundle), source="fhir-subscription"))
    assert parsed == [PatientChange("p3", "delete", None, None, "fhir-subscription")]
    handshake = {"resourceType": "Bundle", "type": "history",
                 "entry": [{"resource": {"resourceType": "SubscriptionStatus", "type": "handshake"}}]}
    assert parse_patient_change(push(json.dumps(handshake), source="fhir-subscription")) == Ignored("no-focus")


def test_force_merge_command_and_repr_hides_nik():
    command = decode(push(json.dumps({"nik": "3201011505900001", "reason": "ticket 7",
                                      "requested_by": "ops@x", "patient_ids": ["a", "b", "a"]})), ForceMerge)
    assert command == ForceMerge("3201011505900001", "ticket 7", "ops@x", ("a", "b"))
    assert "3201011505900001" not in repr(command)


@pytest.mark.parametrize("body,reason", [
    ({"reason": "r", "requested_by": "x"}, "missing-nik"),
    ({"nik": "1", "requested_by": "x"}, "missing-reason"),
    ({"nik": "1", "reason": "r"}, "missing-requested-by"),
    ({"nik": "1", "reason": "r", "requested_by": "x", "patient_ids": "a"}, "bad-patient-ids"),
])
def test_force_merge_malformed(body, reason):
    with pytest.raises(MalformedEvent) as caught:
        decode(push(json.dumps(body)), ForceMerge)
    assert caught.value.reason == reason
    assert "1" not in str(caught.value).replace("malformed event", "")
