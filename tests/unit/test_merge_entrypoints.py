"""Malformed merge-pipeline messages are acknowledged with one log line, never retried forever."""

import base64
import json

import pytest
from cloudevents.http import CloudEvent
from structlog.testing import capture_logs

from functions.merge import merge_fanout, merge_finaliser, merge_worker
from shared.messages import MalformedEvent, MergeTask, decode
from tests.fakes import RecordingPublisher


def event(data) -> CloudEvent:
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub/test"}, data)


def body(payload) -> dict:
    return {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "m1"}}


@pytest.mark.parametrize("data", [
    {}, {"message": {}}, {"message": {"data": "not base64!"}}, {"message": {"data": base64.b64encode(b"[1]").decode()}},
    body({"job_id": 7}), body({"resource_type": "Observation"}),
])
@pytest.mark.parametrize("entry_point", [merge_fanout, merge_worker, merge_finaliser])
def test_malformed_messages_are_acknowledged(entry_point, data, monkeypatch):
    quarantine = RecordingPublisher()
    monkeypatch.setattr("functions._delivery.publisher", lambda settings: quarantine)
    with capture_logs() as logs:
        entry_point(event(data))  # returns: Pub/Sub acks it (no Firestore or FHIR was needed)
    assert [entry["event"] for entry in logs] == ["event_malformed"]
    [(topic, _)] = quarantine.published  # ...once it is kept on the quarantine topic
    assert topic == "quarantine" and quarantine.attributes[0]["quarantine_reason"] == logs[0]["reason"]


def test_decode_requires_string_keys():
    assert decode(body({"job_id": "j", "resource_type": "Flag"}), MergeTask) == MergeTask("j", "Flag")
    with pytest.raises(MalformedEvent):
        decode(body({"job_id": "j"}), MergeTask)
