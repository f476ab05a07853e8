"""Clinical-resource changes for the live late-reference fix: the relay routes them to resource-changes
(patients still to patient-changes), and both notification formats decode to ``ResourceChanged``."""

from __future__ import annotations

import base64
import json

import pytest

from shared.adapters.caller_auth import SharedSecretVerifier
from shared.config import Settings
from shared.messages import Ignored, MalformedEvent
from shared.resource_changes import ResourceChanged, parse_resource_change
from shared.services.relay import relay_notification
from tests.fakes import RecordingPublisher

SETTINGS = Settings()
SECRET = "relay-secret-for-these-tests"
TOKEN = f"Bearer {SECRET}"
VERIFIER = SharedSecretVerifier(SECRET)
OBSERVATION = {"resourceType": "Observation", "id": "o1", "meta": {"versionId": "3"}, "status": "final",
               "subject": {"reference": "Patient/p1"}}


def event(data: bytes, **attributes: str) -> dict:
    return {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m1"}}


def relay(path: str, body: bytes, method: str = "PUT") -> tuple[int, list]:
    publisher = RecordingPublisher()
    result = relay_notification(method=method, path=path, authorization=TOKEN, body=body, settings=SETTINGS,
                                publisher=publisher, verifier=VERIFIER)
    return result.status, list(publisher.published)


def test_the_relay_routes_by_resource_type():
    status, sent = relay("/Observation/o1", json.dumps(OBSERVATION).encode())
    assert status == 202 and [topic for topic, _ in sent] == ["resource-changes"]
    status, sent = relay("/Patient/p1", b'{"resourceType": "Patient", "id": "p1"}')
    assert [topic for topic, _ in sent] == ["patient-changes"]
    status, sent = relay("/", json.dumps(OBSERVATION).encode(), method="POST")   # no path: the body says
    assert [topic for topic, _ in sent] == ["resource-changes"]
    status, sent = relay("/", b"", method="POST")   # a ping goes where it always went
    assert [topic for topic, _ in sent] == ["patient-changes"]


def test_a_clinical_change_from_a_refused_caller_is_not_relayed():
    publisher = RecordingPublisher()
    result = relay_notification(method="PUT", path="/Observation/o1", authorization="Bearer wrong", body=b"{}",
                                settings=SETTINGS, publisher=publisher, verifier=VERIFIER)
    assert result.status == 401 and publisher.published == []


def test_relayed_full_resource_and_id_only_ping():
    [change] = parse_resource_change(event(json.dumps(OBSERVATION).encode(), source="fhir-subscription",
                                           httpMethod="PUT", resourcePath="Observation/o1"))
    assert change == ResourceChanged("Observation", "o1", OBSERVATION)
    [ping] = parse_resource_change(event(b"", source="fhir-subscription", httpMethod="PUT",
                                         resourcePath="Encounter/e1"))
    assert ping == ResourceChanged("Encounter", "e1", None)


def test_healthcare_api_notification():
    name = b"projects/p/locations/l/datasets/d/fhirStores/s/fhir/Observation/o1"
    assert parse_resource_change(event(name, action="CreateResource", resourceType="Observation")) == [
        ResourceChanged("Observation", "o1", None)]


@pytest.mark.parametrize("data, attributes, reason", [
    (b"projects/p/fhir/Patient/p1", {"action": "UpdateResource"}, "not-clinical"),
    (b"projects/p/fhir/Provenance/v1", {"action": "CreateResource"}, "not-clinical"),
    (b"projects/p/fhir/Observation/o1", {"action": "DeleteResource"}, "delete"),
    (b"", {"source": "fhir-subscription"}, "ping"),
])
def test_what_the_fix_ignores(data, attributes, reason):
    assert parse_resource_change(event(data, **attributes)) == Ignored(reason)


def test_malformed():
    with pytest.raises(MalformedEvent):
        parse_resource_change(event(b"not a resource name", action="CreateResource"))
