"""What goes on the wire, as pure functions: request paths and their privacy-safe descriptions,
paging links, retry classification and headers. The client (``shared.fhir.client``) sends; this decides."""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.fhir.errors import FhirError
from shared.fhir.ids import is_fhir_id

_REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]

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


def resource_path(resource_type: str, id: str | None = None, version_id: str | None = None) -> str:
    """``Type``, ``Type/id`` or ``Type/id/_history/vid``, refusing anything that is not a FHIR type or
    id (a stray ``?`` or ``/`` would silently turn a read into a search or into another resource).
    The value is not echoed: a caller's bug might pass patient data."""
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise ValueError("not a FHIR resource type")
    if version_id is not None and id is None:
        raise ValueError("a version without an id")
    parts = [resource_type]
    for value in (id, version_id):
        if value is None:
            continue
        if not is_fhir_id(value):  # "." and ".." too: Patient/.. is the type's root
            raise ValueError("not a FHIR id")
        parts.append(value)
    if version_id is not None:
        parts.insert(2, "_history")
    return "/".join(parts)


def operation_outcome(response: httpx.Response) -> dict | None:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return body
    return None


def issue_codes(outcome: dict | None) -> list[str]:
    # Issue codes are from a fixed value set (not-found, conflict, ...); diagnostics may echo data.
    return [str(issue.get("code")) for issue in (outcome or {}).get("issue", []) if issue.get("code")]


# --- retry plumbing -----------------------------------------------------------------------------



def param_items(params: Params | None) -> list[tuple[str, str]]:
    """Search parameters as (name, value) pairs; a list value in a mapping repeats the parameter
    (``{"_id": ["a", "b"]}`` -> ``_id=a&_id=b``, which FHIR reads as AND)."""
    pairs = params.items() if isinstance(params, Mapping) else (params or [])
    items: list[tuple[str, str]] = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        items += [(name, str(v)) for v in values]
    return items


def bundle_resources(bundle: Mapping[str, Any]) -> Iterator[dict]:
    for entry in bundle.get("entry") or []:
        if (entry.get("search") or {}).get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if resource is not None:
            yield resource
