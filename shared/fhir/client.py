"""FHIR R4 REST client on httpx: reads, searches across all pages, writes, batch bundles, retries.

One ``FhirClient`` is shared by every thread of a process: httpx pools the connections and each call
keeps its retry state to itself, so ``run_concurrently`` can search many resource types at once.

Patient data rule: a request is described in exceptions and logs by its method, its path relative to
the base URL and the *names* of its query parameters only (``GET Patient?identifier=...``). Resource
bodies, search values and OperationOutcome diagnostics never reach a message or a log line; the
OperationOutcome is kept on ``FhirError.outcome`` for callers that need it.

Retry rule (``FhirClient._send``)
---------------------------------
Transient failures are 429, 500, 502, 503, 504, timeouts and dropped connections (the whole
``httpx.TransportError`` family). They are retried with exponential backoff and full jitter, or after
the server's ``Retry-After`` when it sends one, until ``max_attempts`` attempts were made or the next
wait would end after ``retry_budget_seconds`` from the first attempt; then ``RetriesExhausted``.

Whether a transient failure may be retried depends on whether replaying the request is safe:

- *Replayable*: GET, HEAD, PUT, DELETE, and a batch bundle whose entries are all replayable (GET,
  HEAD, PUT, DELETE, or POST with ``ifNoneExist``). These are retried on every transient failure.
  A replayed batch of PUTs with ``ifMatch`` answers ``412`` for entries the lost first attempt had
  already applied: callers must treat a 412 as "changed since read", re-read the resource and
  compare it with what they meant to write (already there = done; otherwise start over from the
  fresh version). The merge worker does exactly this.
- *Not replayable*: POST create, PATCH, operations, and batches holding such entries. Replaying one
  after the server may have processed it would create a second resource. These are retried only
  when the request certainly did not take effect: the connection could not be opened (connect error
  or connect timeout, pool timeout), or the server answered 429 or 503 (refused before processing).
  Any other transient failure raises ``FhirError`` at once, saying the request was not retried.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import tenacity

from shared.config import Settings
from shared.fhir.auth import auth_from_settings
from shared.fhir.errors import (
    _ERROR_BY_STATUS,
    EntryOutcome,
    FhirError,
    RetriesExhausted,
    entry_outcome,
)
from shared.fhir.wire import (
    Params,
    bundle_resources,
    describe_request,
    if_match_header,
    is_replayable,
    issue_codes,
    next_link_path,
    operation_outcome,
    param_items,
    resource_path,
    resource_type_of,
    retry_after_seconds,
)
from shared.logging import get_logger
from shared.ports.fhir import FhirPort

log = get_logger(__name__)

FHIR_JSON = "application/fhir+json"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The server refused these before doing anything, so even a non-idempotent request may be replayed.
REFUSED_BEFORE_PROCESSING_STATUSES = frozenset({429, 503})
# Transport errors raised before the request could be sent.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _TransientStatus(Exception):
    """Raised inside an attempt for a retryable status, so tenacity sees it. Carries no URL."""

    def __init__(self, response: httpx.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.status = response.status_code
        self.retry_after = retry_after_seconds(response.headers.get("Retry-After"))


def _failure_kind(error: BaseException | None) -> str:
    if isinstance(error, _TransientStatus):
        return f"HTTP {error.status}"
    return type(error).__name__ if error is not None else "unknown"


# --- the client ---------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


class FhirClient(FhirPort):
    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None = None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        retry_budget_seconds: float = 120.0,
        max_connections: int = 32,
        page_size: int = 500,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = httpx.URL(base_url.rstrip("/") + "/")
        # The base itself (batch bundles, system operations) is posted to without a trailing slash.
        self._root_url = httpx.URL(base_url.rstrip("/"))
        self.max_attempts = max_attempts
        self.retry_budget_seconds = retry_budget_seconds
        self.page_size = page_size
        self._backoff = tenacity.wait_random_exponential(
            multiplier=backoff_initial_seconds, max=backoff_max_seconds
        )
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": FHIR_JSON},
            transport=transport,
        )
        self._capability: dict | None = None
        self._capability_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FhirClient:
        options: dict[str, Any] = dict(
            timeout=settings.fhir_timeout_seconds,
            max_attempts=settings.fhir_max_attempts,
            retry_budget_seconds=settings.fhir_retry_budget_seconds,
            max_connections=settings.fhir_max_connections,
            page_size=settings.fhir_page_size,
        )
        options.update(overrides)
        return cls(settings.fhir_base_url, auth_from_settings(settings), **options)

    # --- lifecycle ---
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reads ---
    def read(self, resource_type: str, id: str) -> dict:
        return self._json(self._request("GET", resource_path(resource_type, id)))

    def vread(self, resource_type: str, id: str, version_id: str) -> dict:
        return self._json(self._request("GET", resource_path(resource_type, id, version_id)))

    def search_bundles(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """Search bundles page by page, following ``next`` links to the end. ``_count`` defaults to
        the client's page size."""
        items = param_items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        response = self._request("GET", resource_path(resource_type), params=items)
        yield from self._pages(response)

    def search(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """Resources of every page (matches and ``_include``d ones; OperationOutcome entries with
        ``search.mode = outcome`` are left out)."""
        for bundle in self.search_bundles(resource_type, params):
            yield from bundle_resources(bundle)

    def everything(self, patient_id: str, params: Params | None = None) -> Iterator[dict]:
        """Resources of every page of ``Patient/<id>/$everything`` (the patient's compartment and
        what it references; Google Healthcare API and HAPI have it, compartment searches they may not)."""
        items = param_items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        response = self._request("GET", f"{resource_path('Patient', patient_id)}/$everything", params=items)
        for bundle in self._pages(response):
            yield from bundle_resources(bundle)

    def get_path(self, path: str) -> dict:
        """GET a path relative to the base (e.g. a saved ``next_link_path``) and return its JSON;
        resumable jobs use it to continue paging from a checkpoint."""
        return self._json(self._request("GET", path))

    def history(self, resource_type: str, id: str) -> list[dict]:
        """Every stored version (newest first, as servers send them); deletions carry no resource."""
        response = self._request("GET", f"{resource_path(resource_type, id)}/_history")
        return [resource for bundle in self._pages(response) for resource in bundle_resources(bundle)]

    def capability(self) -> dict:
        """The server's CapabilityStatement (``/metadata``), fetched once per client."""
        with self._capability_lock:
            if self._capability is None:
                self._capability = self._json(self._request("GET", "metadata"))
            return self._capability

    # --- writes ---
    def create(self, resource: dict) -> dict:
        response = self._request("POST", resource_path(resource["resourceType"]), body=resource)
        return self._written_resource(response)

    def update(self, resource: dict, *, if_match: str | None = None) -> dict:
        """PUT ``Type/id``. ``if_match`` is the versionId read before ("3", sent as ``W/"3"``);
        ``PreconditionFailed`` when the resource changed since."""
        headers = {"If-Match": if_match_header(if_match)} if if_match is not None else None
        path = resource_path(resource["resourceType"], resource["id"])
        return self._written_resource(self._request("PUT", path, body=resource, headers=headers))

    def batch(self, entries: list[dict]) -> list[EntryOutcome]:
        """POST a ``batch`` Bundle of these entries; one ``EntryOutcome`` per entry, same order.

        Each entry succeeds or fails on its own: look at ``outcome.ok`` / ``outcome.status``. See the
        module docstring for when a batch is retried and how to read a 412 after a retry.
        """
        if not entries:
            return []
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        response_bundle = self._json(self._request("POST", "", body=bundle))
        response_entries = response_bundle.get("entry") or []
        if len(response_entries) != len(entries):
            raise FhirError(
                f"batch response has {len(response_entries)} entries for {len(entries)} requests",
                status=200,
            )
        return [entry_outcome(entry) for entry in response_entries]

    # --- plumbing ---
    def _pages(self, first: httpx.Response) -> Iterator[dict]:
        bundle = self._json(first)
        seen: set[str] = set()
        while True:
            yield bundle
            link = next((item.get("url") for item in bundle.get("link") or [] if item.get("relation") == "next"), None)
            if not link:
                return
            path = next_link_path(link, self.base_url)
            if path in seen:
                raise FhirError(
                    f"search paging loop: the server repeated a next link after {len(seen) + 1} pages"
                )
            seen.add(path)
            bundle = self._json(self._request("GET", path))

    def _json(self, response: httpx.Response) -> dict:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            described = describe_request(response.request.method, response.request.url, self.base_url)
            raise FhirError(f"{described}: response is not JSON", status=response.status_code) from error

    def _written_resource(self, response: httpx.Response) -> dict:
        if response.content:
            return self._json(response)
        # A server answering with an empty body (Prefer ignored): fetch what was stored.
        location = response.headers.get("Location") or response.headers.get("Content-Location")
        if not location:
            raise FhirError(f"{response.request.method} answered without a body or a Location",
                            status=response.status_code)
        return self._json(self._request("GET", next_link_path(location, self.base_url)))

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: dict | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries (module docstring); raise the matching ``FhirError`` for an error status."""
        request_headers = dict(headers or {})
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            request_headers["Content-Type"] = FHIR_JSON
            request_headers["Prefer"] = "return=representation"
        url = path if path else self._root_url
        request = self._http.build_request(method, url, params=params, content=content,
                                           headers=request_headers)
        response = self._send(request, replayable=is_replayable(method, body))
        if response.is_success:
            return response
        outcome = operation_outcome(response)
        codes = issue_codes(outcome)
        described = describe_request(method, request.url, self.base_url)
        error_class = _ERROR_BY_STATUS.get(response.status_code, FhirError)
        raise error_class(
            f"{described} -> {response.status_code}" + (f" ({', '.join(codes)})" if codes else ""),
            status=response.status_code,
            outcome=outcome,
        )

    def _send(self, request: httpx.Request, *, replayable: bool) -> httpx.Response:
        described = describe_request(request.method, request.url, self.base_url)
        resource_type = resource_type_of(request.url, self.base_url)

        def attempt() -> httpx.Response:
            response = self._http.send(request)
            if response.status_code in RETRYABLE_STATUSES:
                response.read()
                response.close()
                raise _TransientStatus(response)
            return response

        def should_retry(error: BaseException) -> bool:
            if isinstance(error, _TransientStatus):
                return replayable or error.status in REFUSED_BEFORE_PROCESSING_STATUSES
            if isinstance(error, httpx.TransportError):
                return replayable or isinstance(error, _NOT_SENT_ERRORS)
            return False

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _TransientStatus) and error.retry_after is not None:
                return error.retry_after
            return self._backoff(state)

        def out_of_budget(state: tenacity.RetryCallState) -> bool:
            return state.seconds_since_start + state.upcoming_sleep > self.retry_budget_seconds

        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "fhir.retry", method=request.method, resource_type=resource_type,
                failure=_failure_kind(error), attempt=state.attempt_number,
                wait_seconds=round(state.upcoming_sleep, 3),
            )

        def give_up(state: tenacity.RetryCallState) -> httpx.Response:
            error = state.outcome.exception() if state.outcome else None
            kind = _failure_kind(error)
            status = error.status if isinstance(error, _TransientStatus) else None
            waited = state.seconds_since_start or 0.0
            reason = ""
            if isinstance(error, _TransientStatus) and error.retry_after is not None \
                    and state.attempt_number < self.max_attempts:
                reason = f"; server asked to retry after {error.retry_after:.0f}s, beyond the retry budget"
            log.error(
                "fhir.gave_up", method=request.method, resource_type=resource_type, failure=kind,
                attempts=state.attempt_number, elapsed_seconds=round(waited, 3),
            )
            raise RetriesExhausted(
                f"{described} failed after {state.attempt_number} attempts in {waited:.1f}s "
                f"(last: {kind}){reason}",
                status=status,
            ) from error

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(should_retry),
            wait=wait,
            stop=tenacity.stop_after_attempt(self.max_attempts) | out_of_budget,
            before_sleep=log_retry,
            retry_error_callback=give_up,
            sleep=self._sleep,
        )
        try:
            return retrying(attempt)
        except _TransientStatus as error:
            # Not replayable and the server may have acted on it: hand the answer back as an error.
            log.error("fhir.not_retried", method=request.method, resource_type=resource_type,
                      failure=_failure_kind(error))
            return error.response
        except httpx.TransportError as error:
            log.error("fhir.not_retried", method=request.method, resource_type=resource_type,
                      failure=_failure_kind(error))
            raise FhirError(
                f"{described} failed ({_failure_kind(error)}); not retried because the request may have "
                "reached the server and replaying it is not safe"
            ) from error
