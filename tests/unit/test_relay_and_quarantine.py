"""Issue 12, item 10: a malformed message is kept on the quarantine topic as it came (never acked into
nothing), and the relay refuses what is not a FHIR notification where the sender sees it."""

from __future__ import annotations

import base64
import json

import pytest
from cloudevents.http import CloudEvent

from functions.matching import match_patient
from shared.adapters.caller_auth import SharedSecretVerifier
from shared.config import Settings
from shared.services.quarantine import quarantine, raw_message
from shared.services.relay import relay_notification, resource_path
from tests.fakes import PublishFailed, RecordingPublisher

SETTINGS = Settings()
SECRET = "relay-secret-for-these-tests"
TOKEN = f"Bearer {SECRET}"


def relay(body: bytes, path: str = "/Patient/p1", method: str = "PUT"):
    publisher = RecordingPublisher()
    result = relay_notification(method=method, path=path, authorization=TOKEN, body=body, settings=SETTINGS,
                                publisher=publisher, verifier=SharedSecretVerifier(SECRET))
    return result, publisher


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"<Patient/>", 400, "bad-json"),
    (b"\xff\xfe not utf-8", 400, "bad-json"),
    (b"[" * 100_000, 400, "json-too-deep"),
    (b"[1, 2]", 400, "not-an-object"),
    (b"{" + b" " * (10 * 1024 * 1024) + b"}", 413, "body-too-large"),
])
def test_the_relay_refuses_what_is_not_a_notification(body, status, reason):
    result, publisher = relay(body)
    assert (result.status, result.reason) == (status, reason) and publisher.published == []


def test_the_relay_accepts_an_empty_ping_for_a_resource_and_a_json_notification():
    ping, publisher = relay(b"", method="DELETE")
    assert ping.status == 202 and publisher.attributes[0]["resourcePath"] == "Patient/p1"
    body = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()
    accepted, publisher = relay(body)
    assert accepted.status == 202 and publisher.published == [("patient-changes", body)]


@pytest.mark.parametrize("path", ["/Patient/..", "/Patient/.", "/hook/Patient/..", "/Patient/" + "a" * 65])
def test_the_relay_reads_no_resource_out_of_a_path_segment_or_an_overlong_id(path):
    assert resource_path(path) is None
    result, publisher = relay(b"", path=path, method="DELETE")
    assert "resourcePath" not in publisher.attributes[0]


def _event(data: bytes, attributes: dict) -> CloudEvent:
    message = {"data": base64.b64encode(data).decode(), "attributes": attributes, "messageId": "m9"}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub/test"},
                      {"message": message})


def test_match_patient_quarantines_a_malformed_message_with_its_bytes_and_attributes_unchanged(monkeypatch):
    kept = RecordingPublisher()
    monkeypatch.setattr("functions._delivery.publisher", lambda settings: kept)
    data, attributes = b"\x00not a notification\xff", {"source": "fhir-subscription", "httpMethod": "PUT"}
    match_patient(_event(data, attributes))
    assert kept.published == [("quarantine", data)]
    assert kept.attributes == [{**attributes, "quarantine_reason": "bad-json", "origin_topic": "patient-changes"}]


def test_a_failed_quarantine_publish_is_not_acknowledged(monkeypatch):
    kept = RecordingPublisher()
    kept.fail_next()
    monkeypatch.setattr("functions._delivery.publisher", lambda settings: kept)
    with pytest.raises(PublishFailed):  # the function fails: Pub/Sub redelivers the message
        match_patient(_event(b"not json", {"source": "fhir-subscription"}))


def test_a_cloud_event_without_a_pubsub_message_is_kept_whole():
    kept = RecordingPublisher()
    quarantine({"unexpected": [1, 2]}, reason="no-message", origin_topic="merge-tasks", publisher=kept,
               topic="quarantine")
    assert json.loads(kept.published[0][1]) == {"unexpected": [1, 2]}
    assert kept.attributes[0] == {"quarantine_whole_event": "true", "quarantine_reason": "no-message",
                                  "origin_topic": "merge-tasks"}
    assert raw_message({"message": {"data": base64.b64encode(b"x").decode()}}) == (b"x", {})
