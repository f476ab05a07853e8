"""Every Patient of a FHIR server, page by page (``shared.ports.patient_source``), several pages at once
where the server allows it.

Pages are sorted by ``_id`` (or ``Settings.scan_sort``): an update during the scan does not move a
record behind the pages read already, as ``_lastUpdated`` order would. When the server's next link
pages by offset (``_offset``, HAPI's ``_getpagesoffset``), the offsets are known in advance and
``workers`` pages are fetched in parallel, in order; otherwise (opaque page tokens: the Healthcare API)
the scan follows the next links one after the other. A record seen twice (an insert shifted the
offsets) is kept once; a Patient created during the scan is the live path's (it sends an event).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlencode, urlsplit

from shared.fhir.wire import next_link_path
from shared.ports.fhir import FhirPort
from shared.ports.patient_source import PatientSource

_OFFSET_PARAMS = ("_offset", "_getpagesoffset")


def _patients(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry") or []
            if (e.get("resource") or {}).get("resourceType") == "Patient"
            and (e.get("search") or {}).get("mode", "match") == "match"]


def _next_path(bundle: dict, fhir: FhirPort) -> str | None:
    link = next((item.get("url") for item in bundle.get("link") or [] if item.get("relation") == "next"), None)
    return next_link_path(link, fhir.base_url) if link else None


class FhirPatientScan(PatientSource):
    def __init__(self, fhir: FhirPort, *, page_size: int = 1000, workers: int = 4, sort: str | None = "_id"):
        self._fhir = fhir
        self._page_size = page_size
        self._workers = workers
        self._sort = sort
        self.parallel = False   # whether the last scan fetched pages in parallel

    def describe(self) -> str:
        return f"fhir:{self._fhir.base_url}"

    def total(self) -> int | None:
        try:
            return self._fhir.get_path("Patient?_summary=count").get("total")
        except Exception:  # a server without _summary=count: no total, the bar runs without one
            return None

    def pages(self) -> Iterator[list[dict]]:
        sort = f"&_sort={self._sort}" if self._sort else ""
        first = self._fhir.get_path(f"Patient?_count={self._page_size}{sort}")
        seen: set[str] = set()

        def fresh(bundle: dict) -> list[dict]:
            page = [p for p in _patients(bundle) if p.get("id") not in seen]
            seen.update(p.get("id") for p in page)
            return page

        yield fresh(first)
        path = _next_path(first, self._fhir)
        offsets = _offset_template(path) if path else None
        total = self.total() if offsets else None
        if offsets and total is not None and self._workers > 1:
            self.parallel = True
            template, step = offsets
            window_starts = range(step, total, step)
            last: dict | None = None
            with ThreadPoolExecutor(self._workers, thread_name_prefix="fhir-scan") as pool:
                ahead: deque = deque()
                starts = iter(window_starts)
                for start in starts:
                    ahead.append(pool.submit(self._fhir.get_path, template(start)))
                    if len(ahead) >= 2 * self._workers:
                        break
                while ahead:
                    last = ahead.popleft().result()
                    yield fresh(last)
                    start = next(starts, None)
                    if start is not None:
                        ahead.append(pool.submit(self._fhir.get_path, template(start)))
            # Records added since the count: follow the last window's next link.
            path = _next_path(last, self._fhir) if last is not None else None
        while path is not None:
            bundle = self._fhir.get_path(path)
            yield fresh(bundle)
            path = _next_path(bundle, self._fhir)


def _offset_template(path: str):
    """For a next link that pages by offset: (offset -> path, page step); else None."""
    parts = urlsplit(path)
    items = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in items if name in _OFFSET_PARAMS]
    if len(names) != 1:
        return None
    name = names[0]
    step = int(dict(items)[name]) if dict(items)[name].isdigit() else 0
    if step <= 0:
        return None

    def template(offset: int) -> str:
        query = urlencode([(n, str(offset) if n == name else v) for n, v in items])
        return f"{parts.path}?{query}"
    return template, step
