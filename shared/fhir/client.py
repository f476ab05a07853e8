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

import email.utils
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import tenacity

from shared.config import Settings
from shared.fhir.auth import auth_from_settings
from shared.logging import get_logger
from shared.ports.fhir import FhirPort

log = get_logger(__name__)

FHIR_JSON = "application/fhir+json"
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The server refused these before doing anything, so even a non-idempotent request may be replayed.
REFUSED_BEFORE_PROCESSING_STATUSES = frozenset({429, 503})
# Transport errors raised before the request could be sent.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


# --- errors ---------------------------------------------------------------------------------------


class FhirError(Exception):
    """A FHIR request failed. The message never contains a resource body or a search value."""

    def __init__(self, message: str, *, status: int | None = None, outcome: dict | None = None):
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class NotFound(FhirError):
    pass


class Gone(FhirError):
    pass


class PreconditionFailed(FhirError):
    pass


class RetriesExhausted(FhirError):
    pass


_ERROR_BY_STATUS: dict[int, type[FhirError]] = {404: NotFound, 410: Gone, 412: PreconditionFailed}


@dataclass
class EntryOutcome:
    """The server's answer to one entry of a batch bundle."""

    status: int
    resource: dict | None
    etag: str | None
    location: str | None
    outcome: dict | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# --- pure helpers ----------------------------------------------------------------------------------


def describe_request(method: str, url: httpx.URL, base_url: httpx.URL) -> str:
    """``METHOD path?name=...`` relative to the base URL, with every query value hidden."""
    path = url.path
    base_path = base_url.path.rstrip("/") + "/"
    if path.startswith(base_path):
        path = path[len(base_path):]
    elif path + "/" == base_path:
        path = ""
    names = [name for name, _value in url.params.multi_items()]
    query = "&".join(f"{name}=..." for name in names)
    return f"{method} {path or '/'}{'?' + query if query else ''}"


def resource_type_of(url: httpx.URL, base_url: httpx.URL) -> str:
    """First path segment after the base URL (``Patient``), ``Bundle`` for batches at the base."""
    base_path = base_url.path.rstrip("/") + "/"
    rest = url.path[len(base_path):] if url.path.startswith(base_path) else url.path.lstrip("/")
    first = rest.split("/", 1)[0]
    return first or "Bundle"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def next_link_path(link: str, base_url: httpx.URL | str) -> str:
    """Turn a bundle's ``next`` link into a path relative to the base URL, ready to GET.

    Accepts absolute links, absolute paths and links relative to the base. The Healthcare API's
    ``.../fhir/Patient/?_page_token=...`` (404s as given) becomes ``Patient?_page_token=...``.
    Query strings are kept byte for byte: page tokens are opaque. A link to another scheme, host or
    port than the base URL, or outside the base path, is refused: following it would send our
    credentials elsewhere.
    """
    base = httpx.URL(str(base_url).rstrip("/") + "/")
    url = base.join(link)
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        raise FhirError(
            f"refusing next link to {url.scheme}://{url.host}:{url.port or ''}, "
            f"which is not the FHIR base {base.scheme}://{base.host}:{base.port or ''}"
        )
    raw = url.raw_path.decode("ascii")
    path, sep, query = raw.partition("?")
    base_path = base.raw_path.decode("ascii").partition("?")[0]
    if not (path + "/").startswith(base_path):
        raise FhirError("refusing next link outside the FHIR base path")
    relative = path[len(base_path):].rstrip("/")
    return f"{relative}{sep}{query}"


def entry_outcome(entry: Mapping[str, Any]) -> EntryOutcome:
    """Parse one ``batch-response`` entry (``response.status`` like ``"412 Precondition Failed"``)."""
    response = entry.get("response") or {}
    status_text = str(response.get("status", "")).strip()
    code = status_text.split(" ", 1)[0]
    if not code.isdigit():
        raise FhirError("batch response entry without a numeric status")
    return EntryOutcome(
        status=int(code),
        resource=entry.get("resource"),
        etag=response.get("etag"),
        location=response.get("location"),
        outcome=response.get("outcome"),
    )


def is_replayable(method: str, body: Mapping[str, Any] | None = None) -> bool:
    """Safe to send again after a failure that may have reached the server (see module docstring)."""
    method = method.upper()
    if method in _REPLAYABLE_METHODS:
        return True
    if method == "POST" and body is not None and body.get("resourceType") == "Bundle" \
            and body.get("type") == "batch":
        return all(_entry_replayable(entry) for entry in body.get("entry") or [])
    return False


def _entry_replayable(entry: Mapping[str, Any]) -> bool:
    request = entry.get("request") or {}
    method = str(request.get("method", "")).upper()
    return method in _REPLAYABLE_METHODS or (method == "POST" and bool(request.get("ifNoneExist")))


def if_match_header(version_id: str) -> str:
    """``"3"`` -> ``W/"3"``; an ETag already in quoted form is passed through."""
    version_id = version_id.strip()
    if version_id.startswith('W/"') or version_id.startswith('"'):
        return version_id
    return f'W/"{version_id}"'


def _path(resource_type: str, id: str | None = None, version_id: str | None = None) -> str:
    """``Type``, ``Type/id`` or ``Type/id/_history/vid``, refusing anything that is not a FHIR type or
    id (a stray ``?`` or ``/`` would silently turn a read into a search or into another resource).
    The value is not echoed: a caller's bug might pass patient data."""
    if not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ValueError("not a FHIR resource type")
    parts = [resource_type]
    for value in (id, version_id):
        if value is None:
            continue
        if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
            raise ValueError("not a FHIR id")
        parts.append(value)
    if version_id is not None:
        parts.insert(2, "_history")
    return "/".join(parts)


def _operation_outcome(response: httpx.Response) -> dict | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    return None


def _issue_codes(outcome: dict | None) -> list[str]:
    # Issue codes are from a fixed value set (not-found, conflict, ...); diagnostics may echo data.
    return [str(issue.get("code")) for issue in (outcome or {}).get("issue", []) if issue.get("code")]


# --- retry plumbing -----------------------------------------------------------------------------


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
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


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
        return self._json(self._request("GET", _path(resource_type, id)))

    def vread(self, resource_type: str, id: str, version_id: str) -> dict:
        return self._json(self._request("GET", _path(resource_type, id, version_id)))

    def search_bundles(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """Search bundles page by page, following ``next`` links to the end. ``_count`` defaults to
        the client's page size."""
        items = _param_items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        response = self._request("GET", _path(resource_type), params=items)
        yield from self._pages(response)

    def search(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        """Resources of every page (matches and ``_include``d ones; OperationOutcome entries with
        ``search.mode = outcome`` are left out)."""
        for bundle in self.search_bundles(resource_type, params):
            yield from _bundle_resources(bundle)

    def everything(self, patient_id: str, params: Params | None = None) -> Iterator[dict]:
        """Resources of every page of ``Patient/<id>/$everything`` (the patient's compartment and
        what it references; Google Healthcare API and HAPI have it, compartment searches they may not)."""
        items = _param_items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        response = self._request("GET", f"{_path('Patient', patient_id)}/$everything", params=items)
        for bundle in self._pages(response):
            yield from _bundle_resources(bundle)

    def get_path(self, path: str) -> dict:
        """GET a path relative to the base (e.g. a saved ``next_link_path``) and return its JSON;
        resumable jobs use it to continue paging from a checkpoint."""
        return self._json(self._request("GET", path))

    def history(self, resource_type: str, id: str) -> list[dict]:
        """Every stored version (newest first, as servers send them); deletions carry no resource."""
        response = self._request("GET", f"{_path(resource_type, id)}/_history")
        return [resource for bundle in self._pages(response) for resource in _bundle_resources(bundle)]

    def capability(self) -> dict:
        """The server's CapabilityStatement (``/metadata``), fetched once per client."""
        with self._capability_lock:
            if self._capability is None:
                self._capability = self._json(self._request("GET", "metadata"))
            return self._capability

    # --- writes ---
    def create(self, resource: dict) -> dict:
        response = self._request("POST", _path(resource["resourceType"]), body=resource)
        return self._written_resource(response)

    def update(self, resource: dict, *, if_match: str | None = None) -> dict:
        """PUT ``Type/id``. ``if_match`` is the versionId read before ("3", sent as ``W/"3"``);
        ``PreconditionFailed`` when the resource changed since."""
        headers = {"If-Match": if_match_header(if_match)} if if_match is not None else None
        path = _path(resource["resourceType"], resource["id"])
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
        outcome = _operation_outcome(response)
        codes = _issue_codes(outcome)
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


def _param_items(params: Params | None) -> list[tuple[str, str]]:
    """Search parameters as (name, value) pairs; a list value in a mapping repeats the parameter
    (``{"_id": ["a", "b"]}`` -> ``_id=a&_id=b``, which FHIR reads as AND)."""
    pairs = params.items() if isinstance(params, Mapping) else (params or [])
    items: list[tuple[str, str]] = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        items += [(name, str(v)) for v in values]
    return items


def _bundle_resources(bundle: Mapping[str, Any]) -> Iterator[dict]:
    for entry in bundle.get("entry") or []:
        if (entry.get("search") or {}).get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if resource is not None:
            yield resource


def run_concurrently(fn: Callable[[T], R], items: Iterable[T], max_workers: int) -> list[R]:
    """``[fn(item) for item in items]`` on a thread pool; results in input order. The first
    exception (in input order) propagates after the running calls finish."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items)))) as pool:
        return list(pool.map(fn, items))
