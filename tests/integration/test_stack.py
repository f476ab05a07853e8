"""The local stack itself: every component answers, projects isolate tests, teardown leaves nothing."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tools.runtime.stack import LocalStack, start_fhir_server

pytestmark = pytest.mark.fresh_fhir


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)  # each server leads its own process group
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_each_component_answers(stack):
    assert httpx.get(f"http://{stack.env['FIRESTORE_EMULATOR_HOST']}/").text.strip() == "Ok"
    assert httpx.get(f"http://{stack.env['PUBSUB_EMULATOR_HOST']}/").text.strip() == "Ok"
    metadata = httpx.get(f"{stack.env['DEDUP_FHIR_BASE_URL']}/metadata")
    assert metadata.status_code == 200 and metadata.json()["resourceType"] == "CapabilityStatement"
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == stack.env["FIRESTORE_EMULATOR_HOST"]
    assert os.environ["PUBSUB_EMULATOR_HOST"] == stack.env["PUBSUB_EMULATOR_HOST"]
    assert set(stack.startup_seconds) == {"firestore", "pubsub", "fhir"}


def test_fixtures_wire_settings_clients_and_topics(settings, fhir, firestore_db, publisher, topics, fresh_fhir):
    assert settings.project_id.startswith("test-")
    assert settings.fhir_base_url == fresh_fhir.base_url  # the module asked for its own server
    created = fhir.create({"resourceType": "Patient", "active": True})
    assert fhir.read("Patient", created["id"])["active"] is True
    firestore_db.collection("probe").document("a").set({"n": 1})
    assert firestore_db.collection("probe").document("a").get().to_dict() == {"n": 1}
    body = b'{"job_id":"job-1","resource_type":"Encounter"}'
    publisher.publish_bytes(settings.topic_merge_tasks, body, origin="test")
    [message] = topics.pull(settings.topic_merge_tasks, timeout=10)
    assert message == {"job_id": "job-1", "resource_type": "Encounter"}
    assert message.attributes == {"origin": "test"}
    assert topics.pull(settings.topic_merge_tasks, timeout=0.5, count=None) == []


# Two tests, two projects: neither sees the other's documents or topics. The first leaves data
# behind on purpose; the second (whichever project it gets) must not find it.
_first_project: dict[str, str] = {}


def test_project_isolation_writer(settings, firestore_db, topics):
    firestore_db.collection("nik_index").document("shared-key").set({"owner": settings.project_id})
    _first_project["id"] = settings.project_id
    assert topics.path(settings.topic_patient_changes).startswith(f"projects/{settings.project_id}/")


def test_project_isolation_reader(settings, firestore_db, topics):
    from google.cloud import pubsub_v1

    assert _first_project["id"] != settings.project_id
    assert not firestore_db.collection("nik_index").document("shared-key").get().exists
    client = pubsub_v1.PublisherClient()
    listed = {t.name for t in client.list_topics(request={"project": f"projects/{settings.project_id}"})}
    assert listed == {topics.path(name) for name in topics.names}
    other = {t.name for t in client.list_topics(request={"project": f"projects/{_first_project['id']}"})}
    assert other and not other & listed


def test_fault_proxy_fixture_fronts_the_fhir_server(fault_proxy, fhir_base_url):
    from tools.runtime.fault_proxy import Fault

    proxy = fault_proxy()
    proxy.inject(Fault.unavailable(), method="GET")
    assert httpx.get(f"{proxy.base_url}/metadata").status_code == 503
    assert httpx.get(f"{proxy.base_url}/metadata").status_code == 200
    assert proxy.count(method="GET", path_prefix="/metadata") == 2


def test_extra_fhir_server_is_empty_and_stops_cleanly(fresh_fhir):
    server = start_fhir_server()
    pid = server.process.pid
    try:
        httpx.post(f"{fresh_fhir.base_url}/Patient", json={"resourceType": "Patient"},
                   headers={"Content-Type": "application/fhir+json"}).raise_for_status()
        bundle = httpx.get(f"{server.base_url}/Patient", params={"_summary": "count"}).json()
        assert bundle.get("total", len(bundle.get("entry", []))) == 0
    finally:
        server.stop()
    assert _gone(pid)
    assert not server.work_dir.exists()


def test_own_stack_teardown_leaves_no_process():
    local = LocalStack(project_id="teardown-check").start()
    pids = dict(local.pids)
    assert set(pids) == {"firestore", "pubsub", "fhir"}
    assert local.env["DEDUP_PROJECT_ID"] == "teardown-check"
    work_dir = local.work_dir
    local.stop()
    assert all(_gone(pid) for pid in pids.values()), pids
    assert not work_dir.exists()
