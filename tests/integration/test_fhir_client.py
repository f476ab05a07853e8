"""FHIR client against the real local FHIR server, directly and through the fault-injecting proxy."""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import pytest

from shared.concurrency import run_concurrently
from shared.fhir.client import FhirClient
from shared.fhir.errors import FhirError, PreconditionFailed, RetriesExhausted
from tools.runtime.fault_proxy import Fault

# An empty server of this module's own, so the counts below are exact.
pytestmark = [pytest.mark.integration, pytest.mark.fresh_fhir]


@pytest.fixture
def proxy(fault_proxy):
    return fault_proxy()


def quick_client(base_url: str, **options) -> FhirClient:
    options = {"timeout": 5, "max_attempts": 5, "retry_budget_seconds": 15,
               "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2, **options}
    return FhirClient(base_url, **options)


def new_system() -> str:
    """A fresh identifier system per test: searches by ``system|`` see only that test's patients."""
    return f"urn:test:{uuid.uuid4().hex}"


def create_patients(client: FhirClient, system: str, count: int) -> list[str]:
    ids = []
    for start in range(0, count, 100):
        entries = [{"resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": str(i)}]},
                    "request": {"method": "POST", "url": "Patient"}}
                   for i in range(start, min(start + 100, count))]
        outcomes = client.batch(entries)
        assert all(o.status == 201 for o in outcomes)
        ids += [o.resource["id"] for o in outcomes]
    return ids


def test_search_pages_through_250_results_returning_each_once(fhir):
    system = new_system()
    created = create_patients(fhir, system, 250)
    bundles = list(fhir.search_bundles("Patient", {"identifier": f"{system}|", "_count": "40"}))
    found = [entry["resource"]["id"] for bundle in bundles for entry in bundle.get("entry", [])]
    assert len(bundles) == 7
    assert len(found) == 250 and set(found) == set(created)
    assert sorted(p["id"] for p in fhir.search("Patient", [("identifier", f"{system}|")])) == sorted(created)


def test_batch_with_a_stale_if_match_next_to_successful_entries(fhir):
    system = new_system()
    ids = create_patients(fhir, system, 3)
    changed = fhir.read("Patient", ids[1])
    changed["gender"] = "female"
    assert fhir.update(changed, if_match="1")["meta"]["versionId"] == "2"

    entries = [{"resource": {"resourceType": "Patient", "id": id_, "gender": "male",
                             "identifier": [{"system": system, "value": "x"}]},
                "request": {"method": "PUT", "url": f"Patient/{id_}", "ifMatch": 'W/"1"'}} for id_ in ids]
    outcomes = fhir.batch(entries)
    assert [o.status for o in outcomes] == [200, 412, 200]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].etag == 'W/"2"' and outcomes[0].resource["id"] == ids[0]
    assert outcomes[1].resource is None and outcomes[1].outcome["resourceType"] == "OperationOutcome"
    assert fhir.read("Patient", ids[1])["gender"] == "female"  # the stale write did not land
    with pytest.raises(PreconditionFailed):
        fhir.update(entries[1]["resource"], if_match="1")


def test_reads_writes_and_history(fhir):
    system = new_system()
    created = fhir.create({"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]})
    assert created["meta"]["versionId"] == "1"
    updated = fhir.update({**created, "gender": "female"}, if_match="1")
    assert updated["id"] == created["id"] and updated["meta"]["versionId"] == "2"
    assert fhir.vread("Patient", created["id"], "1").get("gender") is None
    assert [v["meta"]["versionId"] for v in fhir.history("Patient", created["id"])] == ["2", "1"]
    assert fhir.capability()["resourceType"] == "CapabilityStatement"


def test_many_types_searched_at_once(fhir):
    system = new_system()
    create_patients(fhir, system, 5)
    types = ["Patient", "Observation", "Encounter", "Condition", "Procedure", "MedicationRequest"]
    results = run_concurrently(
        lambda t: len(list(fhir.search(t, {"identifier": f"{system}|"}))) if t == "Patient"
        else len(list(fhir.search(t, {"subject": "Patient/none"}))), types, max_workers=6)
    assert results[0] == 5 and len(results) == len(types)


# --- retries through the fault proxy --------------------------------------------------------------


def test_rate_limited_read_waits_for_retry_after(fhir, proxy):
    patient = fhir.create({"resourceType": "Patient"})
    proxy.inject(Fault.rate_limited(retry_after=1), method="GET")
    with quick_client(proxy.base_url) as through_proxy:
        started = time.monotonic()
        assert through_proxy.read("Patient", patient["id"])["id"] == patient["id"]
        assert time.monotonic() - started >= 1.0
    assert proxy.count(method="GET", outcome="status-429") == 1 and proxy.count(method="GET") == 2


@pytest.mark.parametrize(
    "fault",
    [Fault.unavailable(503), Fault.unavailable(502), Fault.drop(), Fault.delay(2.0)],
    ids=["503", "502", "dropped-connection", "timeout"],
)
def test_transient_failures_end_in_success(fhir, proxy, fault):
    system = new_system()
    create_patients(fhir, system, 60)
    proxy.inject(fault, times=2, method="GET")
    with quick_client(proxy.base_url, timeout=0.8) as through_proxy:
        found = list(through_proxy.search("Patient", {"identifier": f"{system}|", "_count": "25"}))
    assert len(found) == 60 and len({p["id"] for p in found}) == 60
    assert proxy.pending_faults == 0
    # A delayed request is recorded when the proxy finally forwards it, after the fhir gave up on it.
    deadline = time.monotonic() + 5
    while proxy.count(method="GET") < 3 + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxy.count(method="GET") == 3 + 2


def test_persistent_failure_gives_up_quickly_with_a_clear_message(proxy):
    proxy.inject(Fault.unavailable(503), times=1000)
    with quick_client(proxy.base_url, max_attempts=50, retry_budget_seconds=1.5) as through_proxy:
        started = time.monotonic()
        with pytest.raises(RetriesExhausted) as caught:
            list(through_proxy.search("Patient", {"identifier": "https://fhir.kemkes.go.id/id/nik|3201234567890001"}))
        elapsed = time.monotonic() - started
    assert elapsed < 3.0
    message = str(caught.value)
    assert message.startswith("GET Patient?identifier=...&_count=... failed after ")
    assert "(last: HTTP 503)" in message and "3201234567890001" not in message
    assert caught.value.status == 503


def test_replayed_batch_of_updates_reports_412_for_what_the_lost_attempt_applied(fhir, proxy):
    system = new_system()
    ids = create_patients(fhir, system, 2)
    entries = [{"resource": {"resourceType": "Patient", "id": id_, "gender": "male"},
                "request": {"method": "PUT", "url": f"Patient/{id_}", "ifMatch": 'W/"1"'}} for id_ in ids]
    # The server applies the batch, then the connection drops before the answer arrives.
    proxy.inject(Fault.drop(forward_first=True), method="POST")
    with quick_client(proxy.base_url) as through_proxy:
        outcomes = through_proxy.batch(entries)
    assert proxy.count(method="POST") == 2
    assert [o.status for o in outcomes] == [412, 412]
    # What callers do with a 412: re-read and compare with what they meant to write.
    assert all(fhir.read("Patient", id_)["gender"] == "male" for id_ in ids)


def test_create_is_not_replayed_when_the_server_may_have_stored_it(fhir, proxy):
    system = new_system()
    proxy.inject(Fault.drop(forward_first=True), method="POST")
    with quick_client(proxy.base_url) as through_proxy:
        with pytest.raises(FhirError, match="not retried"):
            through_proxy.create({"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]})
    assert proxy.count(method="POST") == 1
    assert len(list(fhir.search("Patient", {"identifier": f"{system}|"}))) == 1


def test_create_is_retried_after_a_rate_limit(fhir, proxy):
    system = new_system()
    proxy.inject(Fault.rate_limited(retry_after=0), method="POST")
    with quick_client(proxy.base_url) as through_proxy:
        through_proxy.create({"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]})
    assert proxy.count(method="POST") == 2
    assert len(list(fhir.search("Patient", {"identifier": f"{system}|"}))) == 1


# --- Healthcare API style paging ------------------------------------------------------------------


class HealthcareStylePaging(httpx.BaseTransport):
    """Wraps the real server so paging looks like the Cloud Healthcare API: next links become
    ``.../fhir/Patient/?_count=N&_page_token=<opaque>``; a request with a token is mapped back to the
    server's own query, and a path ending in ``/`` before the query answers 404 as the API does."""

    def __init__(self, base_url: str):
        self._inner = httpx.HTTPTransport()
        self._base_url = base_url.rstrip("/")
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/"):
            return httpx.Response(404, json={"resourceType": "OperationOutcome",
                                             "issue": [{"severity": "error", "code": "not-found"}]})
        token = request.url.params.get("_page_token")
        if token is not None:
            # The token stands for the whole search state (query and position), like the API's.
            server_query = base64.urlsafe_b64decode(token.encode()).decode()
            request = httpx.Request(request.method, request.url.copy_with(query=server_query.encode()),
                                    headers=request.headers)
        response = self._inner.handle_request(request)
        response.read()
        if response.status_code != 200 or response.json().get("resourceType") != "Bundle":
            return response
        bundle = response.json()
        for link in bundle.get("link", []):
            if link["relation"] == "next":
                next_url = httpx.URL(link["url"])
                opaque = base64.urlsafe_b64encode(next_url.query).decode()
                query = httpx.QueryParams({"_count": next_url.params["_count"], "_page_token": opaque})
                link["url"] = f"{self._base_url}{next_url.path.removeprefix(httpx.URL(self._base_url).path)}/?{query}"
        return httpx.Response(200, json=bundle)

    def close(self) -> None:
        self._inner.close()


def test_healthcare_api_style_next_links_are_followed_to_the_end(fhir, fhir_base_url):
    system = new_system()
    created = create_patients(fhir, system, 130)
    transport = HealthcareStylePaging(fhir_base_url)
    with FhirClient(fhir_base_url, transport=transport, page_size=30) as healthcare_like:
        found = [p["id"] for p in healthcare_like.search("Patient", {"identifier": f"{system}|"})]
    assert len(found) == 130 and set(found) == set(created)
    assert len(transport.paths) == 5 and not any(path.endswith("/") for path in transport.paths)
