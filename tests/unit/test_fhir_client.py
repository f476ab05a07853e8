"""FHIR client logic against httpx.MockTransport: paging, retries, batch parsing, error hygiene, auth."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

import shared.fhir.client as client_module
from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.auth import BearerAuth, GoogleAuth, NoAuth, auth_from_settings
from shared.fhir.client import FhirClient
from shared.fhir.errors import (
    EntryOutcome,
    FhirError,
    Gone,
    NotFound,
    PreconditionFailed,
    RetriesExhausted,
    entry_outcome,
)
from shared.fhir.wire import is_replayable, next_link_path, retry_after_seconds

BASE = "http://fhir.test/fhir"
HEALTHCARE_BASE = ("https://healthcare.googleapis.com/v1/projects/p/locations/asia-southeast2"
                   "/datasets/d/fhirStores/s/fhir")
SECRET_NIK = "3201234567890001"


class Recorder:
    """Stands in for the module logger: keeps every event with its fields."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def _record(self, level):
        return lambda event, **fields: self.events.append((level, event, fields))

    def __getattr__(self, level):
        return self._record(level)


@pytest.fixture
def logs(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(client_module, "log", recorder)
    return recorder


def make_client(handler, base=BASE, sleeps=None, **options) -> FhirClient:
    options.setdefault("backoff_initial_seconds", 0.01)
    return FhirClient(base, transport=httpx.MockTransport(handler),
                      sleep=(sleeps.append if sleeps is not None else (lambda _s: None)), **options)


def bundle(resources, next_url=None):
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {"resourceType": "Bundle", "type": "searchset", "link": links,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def outcome(code):
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": f"value {SECRET_NIK} rejected"}]}


# --- next links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (f"{BASE}/Patient?_count=2&_offset=2", "Patient?_count=2&_offset=2"),
        ("Patient?_count=2&_offset=4", "Patient?_count=2&_offset=4"),
        ("/fhir/Patient?_count=2&_offset=6", "Patient?_count=2&_offset=6"),
        (f"{BASE}/Patient/?_count=100&_page_token=abc", "Patient?_count=100&_page_token=abc"),
        # opaque tokens keep their exact bytes
        (f"{BASE}/Patient?_page_token=a%2Bb%3D%3D+c%2F", "Patient?_page_token=a%2Bb%3D%3D+c%2F"),
        (f"{BASE}/Observation/_history?_page_token=x", "Observation/_history?_page_token=x"),
    ],
)
def test_next_link_is_made_relative_to_the_base(link, expected):
    assert next_link_path(link, BASE) == expected


def test_healthcare_api_next_link_loses_the_slash_before_the_query():
    link = f"{HEALTHCARE_BASE}/Patient/?_count=100&_page_token=Cg0yMDI0LTAx"
    assert next_link_path(link, HEALTHCARE_BASE) == "Patient?_count=100&_page_token=Cg0yMDI0LTAx"


@pytest.mark.parametrize(
    "link",
    [
        "http://evil.test/fhir/Patient?_offset=2",        # other host
        "http://fhir.test:8443/fhir/Patient?_offset=2",   # other port
        "https://fhir.test/fhir/Patient?_offset=2",       # other scheme
        "//evil.test/fhir/Patient",                       # scheme-relative to another host
    ],
)
def test_next_link_to_another_server_is_refused(link):
    with pytest.raises(FhirError, match="refusing next link"):
        next_link_path(link, BASE)


def test_next_link_outside_the_base_path_is_refused():
    with pytest.raises(FhirError, match="outside the FHIR base path"):
        next_link_path("http://fhir.test/admin/Patient?x=1", BASE)
    with pytest.raises(FhirError, match="outside the FHIR base path"):
        next_link_path("../admin/Patient", BASE)


def paged_server(total, page_size, link_style):
    """A handler serving `total` patients in pages, with next links in the given style."""
    patients = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(total)]
    requests = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        assert request.url.path in ("/fhir/Patient", f"{httpx.URL(HEALTHCARE_BASE).path}/Patient")
        offset = int(request.url.params.get("_page_token") or request.url.params.get("_offset") or 0)
        count = int(request.url.params["_count"])
        page = patients[offset:offset + count]
        next_url = None
        if offset + count < total:
            query = f"_count={count}&_page_token={offset + count}"
            next_url = {
                "absolute": f"{BASE}/Patient?{query}",
                "relative": f"Patient?{query}",
                "healthcare": f"{HEALTHCARE_BASE}/Patient/?{query}",
            }[link_style]
        return httpx.Response(200, json=bundle(page, next_url))

    return handler, requests


@pytest.mark.parametrize("link_style", ["absolute", "relative"])
def test_search_follows_next_links_to_the_end(link_style):
    handler, requests = paged_server(total=250, page_size=40, link_style=link_style)
    client = make_client(handler, page_size=40)
    ids = [p["id"] for p in client.search("Patient", {"gender": "female"})]
    assert ids == [f"p{i}" for i in range(250)]
    assert len(requests) == 7
    assert requests[0].url.params["gender"] == "female"


def test_search_follows_healthcare_api_links():
    handler, requests = paged_server(total=95, page_size=30, link_style="healthcare")
    client = make_client(handler, base=HEALTHCARE_BASE)
    ids = [p["id"] for p in client.search("Patient", [("_count", "30")])]
    assert ids == [f"p{i}" for i in range(95)]
    assert all(not r.url.path.endswith("/") for r in requests)


def test_count_comes_from_page_size_unless_given():
    seen = []

    def handler(request):
        seen.append(request.url.params.get_list("_count"))
        return httpx.Response(200, json=bundle([]))

    client = make_client(handler, page_size=123)
    list(client.search("Observation", {"subject": "Patient/1"}))
    list(client.search("Observation", [("subject", "Patient/1"), ("_count", "7")]))
    assert seen == [["123"], ["7"]]


def test_repeated_next_link_raises_instead_of_looping():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(200, json=bundle([{"resourceType": "Patient", "id": "x"}],
                                                f"{BASE}/Patient?_page_token=same"))

    client = make_client(handler)
    with pytest.raises(FhirError, match="repeated a next link"):
        list(client.search("Patient"))
    assert len(calls) == 2  # first page, the token once; the repeat is noticed before fetching


def test_search_refuses_a_next_link_to_another_host():
    def handler(request):
        return httpx.Response(200, json=bundle([], "http://elsewhere.test/fhir/Patient?_offset=1"))

    with pytest.raises(FhirError, match="refusing next link"):
        list(make_client(handler).search("Patient"))


def test_search_skips_outcome_entries():
    def handler(request):
        body = bundle([{"resourceType": "Patient", "id": "a"}])
        body["entry"].append({"resource": outcome("informational"), "search": {"mode": "outcome"}})
        return httpx.Response(200, json=body)

    assert [r["id"] for r in make_client(handler).search("Patient")] == ["a"]


# --- Retry-After ------------------------------------------------------------------------------------


def test_retry_after_parsing():
    now = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after_seconds("Sat, 01 Mar 2025 11:00:00 GMT", now) == 0.0  # in the past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-3", now) is None
    assert retry_after_seconds("", now) is None
    assert retry_after_seconds(None, now) is None


# --- retry decisions ------------------------------------------------------------------------------


def scripted(*steps):
    """A handler answering with each step in turn: an int status, a Response, or an exception."""
    calls = []

    def handler(request):
        step = steps[min(len(calls), len(steps) - 1)]
        calls.append(request)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        body = {"resourceType": "Patient", "id": "1"} if step < 400 else outcome("transient")
        return httpx.Response(step, json=body)

    return handler, calls


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_reads_retry_transient_statuses(status, logs):
    handler, calls = scripted(status, status, 200)
    sleeps = []
    assert make_client(handler, sleeps=sleeps).read("Patient", "1")["id"] == "1"
    assert len(calls) == 3 and len(sleeps) == 2
    retries = [fields for level, event, fields in logs.events if event == "fhir.retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert retries[0]["failure"] == f"HTTP {status}" and retries[0]["resource_type"] == "Patient"


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"),
     httpx.ReadError("reset")],
)
def test_reads_retry_transport_errors(error):
    handler, calls = scripted(error, 200)
    assert make_client(handler).read("Patient", "1")["id"] == "1"
    assert len(calls) == 2


def test_retry_after_is_honoured():
    handler, calls = scripted(httpx.Response(429, headers={"Retry-After": "7"}), 200)
    sleeps = []
    make_client(handler, sleeps=sleeps).read("Patient", "1")
    assert sleeps == [7.0]


def test_backoff_is_full_jitter_exponential():
    handler, calls = scripted(503, 503, 503, 503, 200)
    sleeps = []
    make_client(handler, sleeps=sleeps, backoff_initial_seconds=1.0, backoff_max_seconds=3.0).read("Patient", "1")
    caps = [1.0, 2.0, 3.0, 3.0]
    assert len(sleeps) == 4 and all(0 <= s <= cap for s, cap in zip(sleeps, caps))


def test_gives_up_after_max_attempts_with_a_clear_message(logs):
    handler, calls = scripted(503)
    client = make_client(handler, max_attempts=3)
    with pytest.raises(RetriesExhausted) as caught:
        list(client.search("Patient", {"identifier": f"https://fhir.kemkes.go.id/id/nik|{SECRET_NIK}"}))
    message = str(caught.value)
    assert len(calls) == 3
    assert message.startswith("GET Patient?identifier=...&_count=... failed after 3 attempts")
    assert "last: HTTP 503" in message and caught.value.status == 503
    assert any(event == "fhir.gave_up" and fields["attempts"] == 3 for _l, event, fields in logs.events)


def test_gives_up_when_retry_after_exceeds_the_budget():
    handler, calls = scripted(httpx.Response(429, headers={"Retry-After": "600"}))
    sleeps = []
    with pytest.raises(RetriesExhausted, match="retry after 600s, beyond the retry budget"):
        make_client(handler, sleeps=sleeps, retry_budget_seconds=5).read("Patient", "1")
    assert len(calls) == 1 and sleeps == []


def test_budget_bounds_the_total_time():
    handler, calls = scripted(503)
    client = FhirClient(BASE, transport=httpx.MockTransport(handler), max_attempts=1000,
                        retry_budget_seconds=0.4, backoff_initial_seconds=0.05, backoff_max_seconds=0.1)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted, match="last: HTTP 503"):
        client.read("Patient", "1")
    assert time.monotonic() - started <= 0.4 + 0.2
    assert 2 <= len(calls) < 1000


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(400, FhirError), (401, FhirError), (403, FhirError), (404, NotFound), (410, Gone),
     (412, PreconditionFailed), (422, FhirError)],
)
def test_client_errors_raise_at_once(status, error_class):
    handler, calls = scripted(status)
    with pytest.raises(error_class) as caught:
        make_client(handler).read("Patient", "1")
    assert len(calls) == 1
    assert caught.value.status == status
    assert caught.value.outcome["issue"][0]["code"] == "transient"
    assert str(caught.value) == f"GET Patient/1 -> {status} (transient)"


@pytest.mark.parametrize("step", [429, 503, httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
def test_create_is_retried_when_the_request_certainly_did_not_take_effect(step):
    handler, calls = scripted(step, 201)
    make_client(handler).create({"resourceType": "Patient"})
    assert len(calls) == 2


@pytest.mark.parametrize("step", [500, 502, 504])
def test_create_is_not_retried_after_a_server_error(step):
    handler, calls = scripted(step, 201)
    with pytest.raises(FhirError) as caught:
        make_client(handler).create({"resourceType": "Patient"})
    assert len(calls) == 1 and caught.value.status == step
    assert not isinstance(caught.value, RetriesExhausted)


@pytest.mark.parametrize("step", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped")])
def test_create_is_not_retried_when_the_server_may_have_acted(step):
    handler, calls = scripted(step, 201)
    with pytest.raises(FhirError, match="not retried"):
        make_client(handler).create({"resourceType": "Patient"})
    assert len(calls) == 1


def put_entry(id_, version):
    return {"resource": {"resourceType": "Observation", "id": id_},
            "request": {"method": "PUT", "url": f"Observation/{id_}", "ifMatch": f'W/"{version}"'}}


def batch_response(*statuses):
    return {"resourceType": "Bundle", "type": "batch-response",
            "entry": [{"response": {"status": s}} for s in statuses]}


def test_batch_of_updates_is_retried_after_a_dropped_connection():
    handler, calls = scripted(httpx.RemoteProtocolError("dropped"), 502,
                              httpx.Response(200, json=batch_response("200 OK", "412 Precondition Failed")))
    outcomes = make_client(handler).batch([put_entry("a", 1), put_entry("b", 1)])
    assert len(calls) == 3 and [o.status for o in outcomes] == [200, 412]


def test_batch_with_a_create_is_not_replayed_after_a_dropped_connection():
    entries = [put_entry("a", 1), {"resource": {"resourceType": "Observation"},
                                   "request": {"method": "POST", "url": "Observation"}}]
    handler, calls = scripted(httpx.RemoteProtocolError("dropped"),
                              httpx.Response(200, json=batch_response("200 OK", "201 Created")))
    with pytest.raises(FhirError, match="not retried"):
        make_client(handler).batch(entries)
    assert len(calls) == 1


def test_replayability_rule():
    assert is_replayable("GET") and is_replayable("put") and is_replayable("DELETE")
    assert not is_replayable("POST", {"resourceType": "Patient"}) and not is_replayable("PATCH")
    conditional_create = {"request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=a|b"}}
    plain_create = {"request": {"method": "POST", "url": "Patient"}}
    assert is_replayable("POST", {"resourceType": "Bundle", "type": "batch",
                                  "entry": [put_entry("a", 1), conditional_create]})
    assert not is_replayable("POST", {"resourceType": "Bundle", "type": "batch",
                                      "entry": [put_entry("a", 1), plain_create]})
    assert not is_replayable("POST", {"resourceType": "Bundle", "type": "transaction", "entry": []})


# --- batch ----------------------------------------------------------------------------------------


def test_batch_posts_a_batch_bundle_to_the_base_and_parses_each_outcome():
    posted = []
    response = {"resourceType": "Bundle", "type": "batch-response", "entry": [
        {"response": {"status": "200 OK", "etag": 'W/"2"', "location": f"{BASE}/Observation/a/_history/2"},
         "resource": {"resourceType": "Observation", "id": "a", "meta": {"versionId": "2"}}},
        {"response": {"status": "412 Precondition Failed", "outcome": outcome("conflict")}},
        {"response": {"status": "201", "location": "Observation/c/_history/1", "etag": 'W/"1"'}},
    ]}

    def handler(request):
        posted.append(request)
        return httpx.Response(200, json=response)

    entries = [put_entry("a", 1), put_entry("b", 1), put_entry("c", 0)]
    outcomes = make_client(handler).batch(entries)
    assert str(posted[0].url) == BASE and posted[0].method == "POST"
    body = json.loads(posted[0].content)
    assert body == {"resourceType": "Bundle", "type": "batch", "entry": entries}
    assert [o.status for o in outcomes] == [200, 412, 201]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].etag == 'W/"2"' and outcomes[0].resource["id"] == "a"
    assert outcomes[1].outcome["issue"][0]["code"] == "conflict" and outcomes[1].resource is None
    assert outcomes[2].location == "Observation/c/_history/1"


def test_batch_with_the_wrong_number_of_outcomes_raises():
    handler, _calls = scripted(httpx.Response(200, json=batch_response("200 OK")))
    with pytest.raises(FhirError, match="1 entries for 2 requests"):
        make_client(handler).batch([put_entry("a", 1), put_entry("b", 1)])


def test_empty_batch_sends_nothing():
    handler, calls = scripted(200)
    assert make_client(handler).batch([]) == []
    assert calls == []


def test_entry_outcome_needs_a_status():
    assert entry_outcome({"response": {"status": "404 Not Found"}}) == EntryOutcome(404, None, None, None, None)
    with pytest.raises(FhirError):
        entry_outcome({"response": {}})


# --- writes -----------------------------------------------------------------------------------------


def test_update_sends_a_weak_if_match_and_412_raises():
    seen = []

    def handler(request):
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(200, json={"resourceType": "Patient", "id": "1", "meta": {"versionId": "4"}})
        return httpx.Response(412, json=outcome("conflict"))

    client = make_client(handler)
    assert client.update({"resourceType": "Patient", "id": "1"}, if_match="3")["meta"]["versionId"] == "4"
    assert seen[0].method == "PUT" and seen[0].url.path == "/fhir/Patient/1"
    assert seen[0].headers["If-Match"] == 'W/"3"'
    with pytest.raises(PreconditionFailed):
        client.update({"resourceType": "Patient", "id": "1"}, if_match='W/"3"')
    assert seen[1].headers["If-Match"] == 'W/"3"'


def test_create_without_a_body_reads_the_location():
    def handler(request):
        if request.method == "POST":
            return httpx.Response(201, headers={"Location": f"{BASE}/Patient/9/_history/1"})
        assert request.url.path == "/fhir/Patient/9/_history/1"
        return httpx.Response(200, json={"resourceType": "Patient", "id": "9"})

    assert make_client(handler).create({"resourceType": "Patient"})["id"] == "9"


@pytest.mark.parametrize("bad_id", ["1?identifier=x", "../Observation/2", "", "a/b", "x" * 65])
def test_ids_that_would_change_the_url_are_refused(bad_id):
    handler, calls = scripted(200)
    with pytest.raises(ValueError, match="not a FHIR id") as caught:
        make_client(handler).read("Patient", bad_id)
    assert bad_id not in str(caught.value) or bad_id == ""
    assert calls == []


def test_capability_is_fetched_once():
    handler, calls = scripted(httpx.Response(200, json={"resourceType": "CapabilityStatement"}))
    client = make_client(handler)
    assert client.capability() is client.capability()
    assert len(calls) == 1 and calls[0].url.path == "/fhir/metadata"


# --- no patient data in messages or logs ----------------------------------------------------------


def test_no_search_value_or_body_reaches_messages_or_logs(logs):
    handler, _calls = scripted(httpx.Response(400, json=outcome("invalid")))
    client = make_client(handler)
    patient = {"resourceType": "Patient", "identifier": [{"value": SECRET_NIK}], "name": [{"text": "Siti Aminah"}]}
    errors = []
    with pytest.raises(FhirError) as caught:
        list(client.search("Patient", {"identifier": SECRET_NIK, "name": "Siti Aminah"}))
    errors.append(caught.value)
    with pytest.raises(FhirError) as caught:
        client.create(patient)
    errors.append(caught.value)

    failing, _ = scripted(503)
    with pytest.raises(RetriesExhausted) as caught:
        list(make_client(failing, max_attempts=2).search("Patient", {"identifier": f"s|{SECRET_NIK}"}))
    errors.append(caught.value)
    dropping, _ = scripted(httpx.ReadTimeout("timed out"))
    with pytest.raises(FhirError) as caught:
        make_client(dropping).create(patient)
    errors.append(caught.value)

    text = " ".join(str(e) for e in errors) + json.dumps(logs.events, default=str)
    assert SECRET_NIK not in text and "Siti" not in text
    assert logs.events, "retries and give-ups are logged"


# --- concurrency ----------------------------------------------------------------------------------


def test_run_concurrently_keeps_order_and_shares_one_client():
    threads = set()

    def handler(request):
        threads.add(threading.get_ident())
        kind = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json=bundle([{"resourceType": kind, "id": f"{kind}-1"}]))

    client = make_client(handler)
    types = ["Observation", "Encounter", "Condition", "Procedure", "MedicationRequest", "DiagnosticReport"]
    results = run_concurrently(lambda t: [r["id"] for r in client.search(t)], types, max_workers=4)
    assert results == [[f"{t}-1"] for t in types]
    assert run_concurrently(str, [], max_workers=4) == []


def test_run_concurrently_propagates_errors():
    def fail_on_two(x):
        if x == 2:
            raise NotFound("gone", status=404)
        return x

    with pytest.raises(NotFound):
        run_concurrently(fail_on_two, [1, 2, 3], max_workers=3)


# --- auth -----------------------------------------------------------------------------------------


def test_bearer_auth_sets_the_header_and_hides_the_token():
    seen = []

    def handler(request):
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"resourceType": "Patient", "id": "1"})

    FhirClient(BASE, BearerAuth(SecretStr("s3cr3t")), transport=httpx.MockTransport(handler)).read("Patient", "1")
    assert seen == ["Bearer s3cr3t"] and "s3cr3t" not in repr(BearerAuth("s3cr3t"))


class FakeCredentials:
    """google-auth credentials lookalike: a token that expires when told to."""

    def __init__(self):
        self.token = None
        self.refreshes = 0
        self.expired = True

    @property
    def valid(self):
        return self.token is not None and not self.expired

    def refresh(self, _request):
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"
        self.expired = False


def test_google_auth_refreshes_when_expired_and_after_a_401():
    creds = FakeCredentials()
    seen = []
    reject_next = {"flag": False}

    def handler(request):
        seen.append(request.headers["Authorization"])
        if reject_next["flag"]:
            reject_next["flag"] = False
            return httpx.Response(401)
        return httpx.Response(200, json={"resourceType": "Patient", "id": "1"})

    client = FhirClient(BASE, GoogleAuth(credentials=creds, token_request=object()),
                        transport=httpx.MockTransport(handler))
    client.read("Patient", "1")
    client.read("Patient", "1")
    assert seen == ["Bearer token-1", "Bearer token-1"]
    creds.expired = True
    client.read("Patient", "1")
    assert seen[-1] == "Bearer token-2"
    reject_next["flag"] = True
    client.read("Patient", "1")
    assert seen[-2:] == ["Bearer token-2", "Bearer token-3"]


def test_auth_and_client_from_settings():
    assert isinstance(auth_from_settings(Settings(fhir_auth="none")), NoAuth)
    assert isinstance(auth_from_settings(Settings(fhir_auth="bearer", fhir_bearer_token="t")), BearerAuth)
    with pytest.raises(ValueError, match="DEDUP_FHIR_BEARER_TOKEN"):
        auth_from_settings(Settings(fhir_auth="bearer"))
    settings = Settings(fhir_base_url="http://127.0.0.1:1/fhir/", fhir_page_size=40, fhir_max_attempts=2,
                        fhir_retry_budget_seconds=3.0)
    with FhirClient.from_settings(settings) as client:
        assert str(client.base_url) == "http://127.0.0.1:1/fhir/"
        assert (client.page_size, client.max_attempts, client.retry_budget_seconds) == (40, 2, 3.0)


def test_search_parameters_may_repeat():
    seen = []

    def handler(request):
        seen.append(request.url.params.multi_items())
        return httpx.Response(200, json=bundle([]))

    client = make_client(handler, page_size=10)
    list(client.search("Observation", {"date": ["ge2024-01-01", "lt2025-01-01"], "subject": "Patient/1"}))
    assert seen[0] == [("date", "ge2024-01-01"), ("date", "lt2025-01-01"), ("subject", "Patient/1"), ("_count", "10")]
