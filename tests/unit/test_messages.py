"""Typed Pub/Sub messages: bodies as the topics carry them, validation with reason codes only."""

from __future__ import annotations

import base64
import json

import pytest

from shared.adapters.pubsub import Publisher
from shared.config import Settings
from shared.messages import (
    FinaliseMerge,
    ForceMerge,
    MalformedEvent,
    MalformedMessage,
    MergeRequested,
    MergeTask,
    ReconcileRun,
    decode,
    message_id,
)


def event(body: bytes, message_id_: str = "m7") -> dict:
    return {"message": {"data": base64.b64encode(body).decode(), "messageId": message_id_}}


def compact(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


REQUEST = {"request_id": "mr-1", "id": "mr-1", "group": "nik_index/tok", "nik_token": "tok", "master": "m",
           "duplicates": ["d1", "d2"], "reason": "nik-exact", "requested_by": "matching",
           "evidence": {"rule": "nik-exact", "score": 100}}


def test_one_exception_class():
    assert MalformedMessage is MalformedEvent and issubclass(MalformedEvent, ValueError)


def test_merge_requested_body_is_the_request_without_its_id_alias():
    message = MergeRequested.from_dict(REQUEST)
    assert message.duplicates == ("d1", "d2") and message.master == "m"
    assert message.to_json() == compact({k: v for k, v in REQUEST.items() if k != "id"})
    assert MergeRequested.from_json(message.to_json()) == message
    assert decode(event(message.to_json()), MergeRequested) == message


def test_merge_requested_group_from_token_and_nullable_fields():
    message = MergeRequested.from_dict({"request_id": "mr-2", "nik_token": "tok", "master": "m",
                                        "duplicates": ["d"], "reason": None, "requested_by": None})
    assert message.group == "nik_index/tok" and message.evidence == {}
    assert json.loads(message.to_json())["reason"] is None


@pytest.mark.parametrize("body,reason", [
    ({"group": "nik_index/t", "master": "m", "duplicates": []}, "missing-request_id"),
    ({"request_id": 7, "group": "nik_index/t", "master": "m", "duplicates": []}, "missing-request_id"),
    ({"request_id": "r", "master": "m", "duplicates": []}, "missing-group"),
    ({"request_id": "r", "group": "nik_index/t", "duplicates": []}, "missing-master"),
    ({"request_id": "r", "group": "nik_index/t", "master": "m", "duplicates": "d"}, "bad-duplicates"),
    ({"request_id": "r", "group": "nik_index/t", "master": "m", "duplicates": [], "evidence": [1]}, "bad-evidence"),
])
def test_merge_requested_malformed(body, reason):
    with pytest.raises(MalformedEvent) as caught:
        MergeRequested.from_json(compact(body))
    assert caught.value.reason == reason


def test_merge_task_omits_resources_when_none_and_keeps_an_empty_list():
    assert MergeTask("j", "Observation").to_json() == compact({"job_id": "j", "resource_type": "Observation"})
    listed = ({"resourceType": "Observation", "id": "o1"},)
    task = MergeTask("j", "Observation", listed)
    assert task.to_json() == compact({"job_id": "j", "resource_type": "Observation", "resources": list(listed)})
    assert MergeTask.from_json(task.to_json()) == task
    assert MergeTask.from_dict({"job_id": "j", "resource_type": "Flag", "resources": []}).resources == ()


@pytest.mark.parametrize("resources", [
    "x", [1], [{"resourceType": "Flag", "id": "f"}], [{"resourceType": "Observation"}],
])
def test_merge_task_unusable_resources_mean_search(resources):
    body = {"job_id": "j", "resource_type": "Observation", "resources": resources}
    assert MergeTask.from_dict(body).resources is None
    with pytest.raises(MalformedEvent):
        MergeTask("j", "Observation", tuple(resources) if isinstance(resources, list) else resources)


@pytest.mark.parametrize("body,reason", [
    ({"resource_type": "Observation"}, "missing-job_id"),
    ({"job_id": 7, "resource_type": "Observation"}, "missing-job_id"),
    ({"job_id": "j"}, "bad-resource-type"),
    ({"job_id": "j", "resource_type": "observation"}, "bad-resource-type"),
    ({"job_id": "j", "resource_type": "Observation/../x"}, "bad-resource-type"),
])
def test_merge_task_malformed(body, reason):
    with pytest.raises(MalformedEvent) as caught:
        decode(event(compact(body)), MergeTask)
    assert caught.value.reason == reason


def test_finalise_and_reconcile():
    assert FinaliseMerge("j").to_json() == b'{"job_id":"j"}'
    assert decode(event(b'{"job_id":"j","x":1}'), FinaliseMerge) == FinaliseMerge("j")
    assert decode(event(b"{}"), ReconcileRun) == ReconcileRun(False)
    assert decode(event(b'{"full":true}'), ReconcileRun).full is True
    for body in (b'{"full":"yes"}', b'{"full":null}', b'{"full":1}'):
        with pytest.raises(MalformedEvent) as caught:
            decode(event(body), ReconcileRun)
        assert caught.value.reason == "full-not-boolean"


@pytest.mark.parametrize("data,reason", [
    ({}, "no-message"), ({"message": {"data": "not base64!"}}, "bad-base64"),
    (event(b"{not json"), "bad-json"), (event(b"[1]"), "bad-body"), (event(b""), "bad-json"),
])
def test_envelope_and_body_errors(data, reason):
    with pytest.raises(MalformedEvent) as caught:
        decode(data, FinaliseMerge)
    assert caught.value.reason == reason


def test_force_merge_body_round_trip_hides_the_nik():
    command = ForceMerge("3201011505900001", "ticket", "ops@x", ("a", "b"))
    assert ForceMerge.from_json(command.to_json()) == command
    assert "3201011505900001" not in repr(command)
    with pytest.raises(MalformedEvent) as caught:
        ForceMerge.from_dict({"nik": "3201011505900001", "reason": "r", "requested_by": "x", "patient_ids": [{}]})
    assert "3201011505900001" not in str(caught.value)


def test_message_id():
    assert message_id(event(b"{}", "42")) == "42"
    assert message_id({"message": {"message_id": "43"}}) == "43"
    assert message_id("junk") is None and message_id({"message": "x"}) is None


class FakeClient:
    def __init__(self):
        self.published = []

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, path, data, **attributes):
        self.published.append((path, data, attributes))

        class Done:
            def result(self, timeout=None):
                return "id-1"

        return Done()


@pytest.mark.parametrize("message", [
    MergeRequested.from_dict(REQUEST), MergeTask("j", "Flag"), FinaliseMerge("j"), ReconcileRun(True),
    ForceMerge("1234", "r", "x"),
])
def test_publisher_sends_to_the_topic_of_its_setting(message):
    settings, client = Settings(project_id="p"), FakeClient()
    assert Publisher(settings, client).send(message) == "id-1"
    topic = getattr(settings, message.topic_setting)
    assert client.published == [(f"projects/p/topics/{topic}", message.to_json(), {})]


def test_force_merge_without_a_nik_is_what_matching_builds_for_a_confirmed_group():
    command = ForceMerge(nik="", reason="review-approved", requested_by="reviewer", patient_ids=("y1", "y2"))
    assert command.patient_ids == ("y1", "y2")
