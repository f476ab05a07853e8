"""In-memory fakes of every port, for fast orchestration tests (the emulators and the real FHIR server
stay for tests/integration).

Each fake keeps the semantics its production adapter has and the services rely on:

- ``InMemoryGroups`` (``FirestoreGroups``): a transaction loads a deep copy of the group, runs the use
  case's function, writes the group back only when ``to_doc()`` changed (stamping ``updated_at``) and
  creates the proposed review items that do not exist yet, all at once; transactions over one group
  serialise on a lock. ``fail_next`` makes attempts fail (aborted and retried, or raised).
- ``InMemoryPatientKeys`` / ``InMemoryReviewItems`` / ``InMemoryBackfillRuns``: documents stored in
  their ``to_doc()`` form, so a test sees exactly what Firestore would hold.
- ``RecordingPublisher`` (``Publisher``): records what was published, as JSON would carry it;
  ``fail_next`` makes publishes raise.
- ``InMemoryFhir`` (``FhirClient``): a small FHIR R4 server, see its docstring.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from shared.clock import now_iso
from shared.domain.backfill import BackfillProgress
from shared.domain.group import Group
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem, ReviewStatus
from shared.fhir.compartment import patient_compartment
from shared.fhir.errors import EntryOutcome, FhirError, Gone, NotFound, PreconditionFailed
from shared.fhir.references import patient_references
from shared.fhir.wire import next_link_path
from shared.ports.backfill_runs import BackfillRunRepository
from shared.ports.fhir import FhirPort, Params
from shared.ports.index import GroupRepository, GroupTransaction, PatientKeyRepository, ReviewItemRepository
from shared.ports.messaging import MessagePublisher

T = TypeVar("T")


class TransactionAborted(RuntimeError):
    """A group transaction that failed every attempt (Firestore's ``Aborted`` after the retries)."""


# --- the matching index ------------------------------------------------------------------------------


class InMemoryReviewItems(ReviewItemRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, item_id: str) -> ReviewItem | None:
        with self._lock:
            doc = self.docs.get(item_id)
            return ReviewItem.from_doc(item_id, copy.deepcopy(doc)) if doc is not None else None

    def pending(self, reason: str | None = None, limit: int = 200) -> list[ReviewItem]:
        with self._lock:
            # As the Firestore query: filter, take ``limit`` in document-id order, then oldest first.
            ids = sorted(i for i, d in self.docs.items() if d.get("status") == ReviewStatus.PENDING
                         and (not reason or d.get("reason") == reason))[:limit]
            items = [ReviewItem.from_doc(i, copy.deepcopy(self.docs[i])) for i in ids]
        return sorted(items, key=lambda item: (item.created_at or "", item.id))

    def decide(self, item_id: str, status: ReviewStatus, decision: dict) -> None:
        with self._lock:
            if item_id not in self.docs:  # Firestore's update() of a missing document fails too
                raise LookupError(f"no review item {item_id}")
            self.docs[item_id].update({"status": str(status), **copy.deepcopy(decision)})

    def all(self) -> Iterator[ReviewItem]:
        with self._lock:
            snapshot = copy.deepcopy(self.docs)
        for item_id, doc in sorted(snapshot.items()):
            yield ReviewItem.from_doc(item_id, doc)

    def _create_absent(self, items: Sequence[ReviewItem]) -> None:
        with self._lock:
            for item in items:
                self.docs.setdefault(item.id, copy.deepcopy(item.to_doc()))


class _Transaction(GroupTransaction):
    def __init__(self, group: Group, reviews: InMemoryReviewItems):
        self.group = group
        self._reviews = reviews
        self.new_reviews: list[ReviewItem] = []

    def propose_reviews(self, items: Sequence[ReviewItem]) -> None:
        for item in items:
            if item.id not in self._reviews.docs:
                self.new_reviews.append(copy.deepcopy(item))


class InMemoryGroups(GroupRepository):
    """Groups by id (``nik_index/<token>``), stored as their ``to_doc()``."""

    def __init__(self, reviews: InMemoryReviewItems | None = None, attempts: int = 5):
        self.reviews = reviews if reviews is not None else InMemoryReviewItems()
        self.docs: dict[str, dict] = {}
        self.writes: Counter = Counter()      # group id -> documents written
        self.attempts: Counter = Counter()    # group id -> transaction attempts (``change`` calls)
        self._attempt_limit = attempts
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._failures: list[tuple[str | None, BaseException | None]] = []

    def fail_next(self, times: int = 1, *, group_id: str | None = None, error: BaseException | None = None) -> None:
        """The next ``times`` attempts (of ``group_id``, or of any group) run ``change`` and then fail,
        writing nothing. Without ``error`` the attempt aborts as on contention and ``transact``
        retries it (``TransactionAborted`` after ``attempts`` tries); with ``error``, it is raised."""
        with self._locks_lock:
            self._failures.extend([(group_id, error)] * times)

    def _take_failure(self, group_id: str) -> tuple[bool, BaseException | None]:
        with self._locks_lock:
            for index, (target, error) in enumerate(self._failures):
                if target is None or target == group_id:
                    del self._failures[index]
                    return True, error
        return False, None

    def _lock(self, group_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(group_id, threading.Lock())

    def get(self, group_id: str) -> Group | None:
        doc = self.docs.get(group_id)
        return Group.from_doc(group_id, copy.deepcopy(doc)) if doc is not None else None

    def all(self, collection: str) -> Iterator[Group]:
        for group_id in sorted(self.docs):
            if group_id.startswith(collection + "/"):
                yield Group.from_doc(group_id, copy.deepcopy(self.docs[group_id]))

    def transact(self, group_id: str, change: Callable[[GroupTransaction], T]) -> T:
        with self._lock(group_id):
            for attempt in range(self._attempt_limit):
                stored = self.docs.get(group_id)
                group = Group.from_doc(group_id, copy.deepcopy(stored) if stored is not None else None)
                before = group.to_doc()
                tx = _Transaction(group, self.reviews)
                self.attempts[group_id] += 1
                result = change(tx)
                failed, error = self._take_failure(group_id)
                if failed:
                    if error is not None:
                        raise error
                    if attempt == self._attempt_limit - 1:
                        raise TransactionAborted(f"transaction on {group_id} aborted {self._attempt_limit} times")
                    continue
                if group.to_doc() != before:
                    group.updated_at = now_iso()
                    self.docs[group_id] = copy.deepcopy(group.to_doc())
                    self.writes[group_id] += 1
                self.reviews._create_absent(tx.new_reviews)
                return result
        raise AssertionError("unreachable")


class InMemoryPatientKeys(PatientKeyRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def get(self, patient_id: str) -> PatientKeys | None:
        doc = self.docs.get(patient_id)
        return PatientKeys.from_doc(patient_id, copy.deepcopy(doc)) if doc is not None else None

    def put(self, keys: PatientKeys) -> None:
        keys.updated_at = now_iso()
        self.docs[keys.patient_id] = copy.deepcopy(keys.to_doc())

    def delete(self, patient_id: str) -> None:
        self.docs.pop(patient_id, None)

    def count(self) -> int:
        return len(self.docs)


class InMemoryBackfillRuns(BackfillRunRepository):
    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.saves = 0

    def load(self, run_id: str) -> BackfillProgress | None:
        doc = self.docs.get(run_id)
        return BackfillProgress.from_doc(run_id, copy.deepcopy(doc)) if doc is not None else None

    def save(self, progress: BackfillProgress) -> None:
        self.docs[progress.run_id] = copy.deepcopy(progress.to_doc())
        self.saves += 1


class InMemoryMergeJobs:
    """The part of the merge jobs repository the report reads."""

    def __init__(self, jobs: Sequence[dict] = ()):
        self.jobs = [copy.deepcopy(job) for job in jobs]

    def all(self) -> list[dict]:
        return copy.deepcopy(self.jobs)

    def with_duplicate(self, patient_id: str) -> list[dict]:
        return [copy.deepcopy(job) for job in self.jobs if patient_id in (job.get("duplicates") or [])]


# --- Pub/Sub -------------------------------------------------------------------------------------------


class PublishFailed(RuntimeError):
    """What ``RecordingPublisher.fail_next`` raises by default (Pub/Sub did not store the message)."""


class RecordingPublisher(MessagePublisher):
    """``sent``: ``(message.topic_setting, message)`` of each ``send``; ``published``: ``(topic, data)`` of
    each ``publish_bytes`` and ``attributes`` its attributes. A failed publish records nothing."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.attributes: list[dict[str, str]] = []
        self.sent: list[tuple[str, Any]] = []
        self._failures: list[tuple[str | None, BaseException]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def fail_next(self, times: int = 1, *, topic: str | None = None, error: BaseException | None = None) -> None:
        """The next ``times`` publishes (to ``topic``: a topic name, or a ``topic_setting`` for ``send``) fail."""
        with self._lock:
            self._failures.extend([(topic, error or PublishFailed("publish failed (injected)"))] * times)

    def _record(self, topic: str, record) -> str:
        with self._lock:
            for index, (target, error) in enumerate(self._failures):
                if target is None or target == topic:
                    del self._failures[index]
                    raise error
            record()
            return str(next(self._ids))

    def publish_bytes(self, topic: str, data: bytes, timeout: float = 30.0, **attributes: str) -> str:
        def record():
            self.published.append((topic, bytes(data)))
            self.attributes.append({str(k): str(v) for k, v in attributes.items()})
        return self._record(topic, record)

    def send(self, message: Any) -> str:
        return self._record(message.topic_setting, lambda: self.sent.append((message.topic_setting, message)))

    def payloads(self, topic: str) -> list[bytes]:
        return [body for name, body in self.published if name == topic]


# --- FHIR ----------------------------------------------------------------------------------------------

_REFERENCE_VALUE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_VERSION_TAG = re.compile(r'^(?:W/)?"?([^"]*)"?$')
# Search parameters whose element has another name (R4: ``patient`` is ``subject`` on many types).
_PARAM_ELEMENTS = {"patient": ("patient", "subject")}


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _items(params: Params | None) -> list[tuple[str, str]]:
    pairs = params.items() if hasattr(params, "items") else (params or [])
    items: list[tuple[str, str]] = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        items += [(str(name), str(v)) for v in values]
    return items


def _token_matches(identifiers: list, token: str) -> bool:
    system, bar, value = token.partition("|")
    if not bar:
        system, value = None, token
    for identifier in identifiers or []:
        if system is not None and system != "" and identifier.get("system") != system:
            continue
        if system == "" and identifier.get("system"):
            continue
        if value and identifier.get("value") != value:
            continue
        return True
    return False


class InMemoryFhir(FhirPort):
    """A small FHIR R4 server in memory.

    - Resources by type and id; every write makes a new version (integer ``versionId`` from 1, a
      strictly increasing ``meta.lastUpdated``); a delete leaves a tombstone: ``read`` raises ``Gone``,
      a never-stored resource ``NotFound``; ``vread`` and ``history`` see every version.
    - ``update(if_match=...)`` and batch ``PUT`` entries with ``ifMatch`` refuse a stale version (412).
    - Search: ``_id``, ``identifier=[system]|value`` (comma = OR), reference parameters
      (``subject=Patient/a,Patient/b``: a Patient reference under the element of that name; ``patient``
      also looks under ``subject``), ``_count``, ``_sort`` (``[-]_id``, ``[-]_lastUpdated``); anything
      else is ignored, as a lenient server does. Pages are offset-paged with absolute ``next`` links.
    - ``everything(id)``: the patient and every current resource referencing it.
    - ``capability()``: Patient and the Patient-compartment types with their reference parameters,
      and ``$everything`` on Patient.
    """

    def __init__(self, base_url: str = "http://fhir.test/fhir/", page_size: int = 50):
        self.base_url = base_url.rstrip("/") + "/"
        self.page_size = page_size
        self._versions: dict[tuple[str, str], list[dict | None]] = {}  # None: a deletion
        self._ids = itertools.count(1)
        self._clock = datetime(2025, 1, 1, tzinfo=UTC)
        self._lock = threading.RLock()
        self.requests: Counter = Counter()   # interaction -> count (read, search, update, batch...)

    # --- storage ---------------------------------------------------------------------------------
    def _tick(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat().replace("+00:00", "Z")

    def _current(self, resource_type: str, id: str) -> dict:
        versions = self._versions.get((resource_type, id))
        if not versions:
            raise NotFound(f"GET {resource_type}/{id} -> 404", status=404)
        if versions[-1] is None:
            raise Gone(f"GET {resource_type}/{id} -> 410", status=410)
        return versions[-1]

    def _store(self, resource: dict) -> dict:
        key = (resource["resourceType"], resource["id"])
        versions = self._versions.setdefault(key, [])
        stored = copy.deepcopy(resource)
        stored["meta"] = {**(stored.get("meta") or {}), "versionId": str(len(versions) + 1),
                          "lastUpdated": self._tick()}
        versions.append(stored)
        return copy.deepcopy(stored)

    def _check_version(self, resource_type: str, id: str, if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = _VERSION_TAG.match(if_match.strip())
        versions = self._versions.get((resource_type, id)) or []
        current = str(len(versions)) if versions and versions[-1] is not None else None
        if current is None or not wanted or wanted.group(1) != current:
            raise PreconditionFailed(f"PUT {resource_type}/{id} -> 412", status=412,
                                     outcome=_outcome("conflict"))

    def delete(self, resource_type: str, id: str) -> None:
        """DELETE (not on the port: tests use it to make a resource gone)."""
        with self._lock:
            self._current(resource_type, id)
            self._versions[(resource_type, id)].append(None)

    def resources(self, resource_type: str | None = None) -> list[dict]:
        """Every current resource (of one type), in creation order: for assertions."""
        with self._lock:
            return [copy.deepcopy(versions[-1]) for (rtype, _), versions in self._versions.items()
                    if versions[-1] is not None and resource_type in (None, rtype)]

    # --- reads -----------------------------------------------------------------------------------
    def read(self, resource_type: str, id: str) -> dict:
        with self._lock:
            self.requests["read"] += 1
            return copy.deepcopy(self._current(resource_type, id))

    def vread(self, resource_type: str, id: str, version_id: str) -> dict:
        with self._lock:
            self.requests["vread"] += 1
            versions = self._versions.get((resource_type, id)) or []
            index = int(version_id) - 1 if str(version_id).isdigit() else -1
            if not 0 <= index < len(versions):
                raise NotFound(f"GET {resource_type}/{id}/_history/{version_id} -> 404", status=404)
            if versions[index] is None:
                raise Gone(f"GET {resource_type}/{id}/_history/{version_id} -> 410", status=410)
            return copy.deepcopy(versions[index])

    def history(self, resource_type: str, id: str) -> list[dict]:
        with self._lock:
            self.requests["history"] += 1
            versions = self._versions.get((resource_type, id))
            if not versions:
                raise NotFound(f"GET {resource_type}/{id}/_history -> 404", status=404)
            return [copy.deepcopy(v) for v in reversed(versions) if v is not None]

    def _matches(self, resource: dict, name: str, value: str) -> bool:
        alternatives = value.split(",")
        if name == "_id":
            return resource["id"] in alternatives
        if name == "identifier":
            return any(_token_matches(resource.get("identifier") or [], token) for token in alternatives)
        if all(_REFERENCE_VALUE.match(v) for v in alternatives):
            elements = _PARAM_ELEMENTS.get(name, (_camel(name.split(":")[0]),))
            wanted = {v.split("/", 1)[1] for v in alternatives if v.startswith("Patient/")}
            return any(pid in wanted and any(part in elements for part in path)
                       for path, pid in patient_references(resource))
        return True  # an unknown parameter: ignored

    def _search_page(self, resource_type: str, items: list[tuple[str, str]]) -> dict:
        self.requests["search"] += 1
        filters = [(n, v) for n, v in items if not n.startswith("_") or n == "_id"]
        options = dict(items)
        count = int(options.get("_count", self.page_size))
        offset = int(options.get("_getpagesoffset", 0))
        found = [r for (rtype, _), versions in self._versions.items()
                 if rtype == resource_type and (r := versions[-1]) is not None
                 and all(self._matches(r, n, v) for n, v in filters)]
        for key in reversed([k.strip() for k in options.get("_sort", "").split(",") if k.strip()]):
            field = key.lstrip("-")
            if field in ("_id", "_lastUpdated"):
                found.sort(key=lambda r: r["id"] if field == "_id" else r["meta"]["lastUpdated"],
                           reverse=key.startswith("-"))
        page = found[offset:offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": self._url(resource_type, items)}],
            "entry": [{"fullUrl": f"{self.base_url}{resource_type}/{r['id']}", "resource": copy.deepcopy(r),
                       "search": {"mode": "match"}} for r in page],
        }
        if offset + count < len(found):
            following = [(n, v) for n, v in items if n != "_getpagesoffset"] + [("_getpagesoffset",
                                                                                 str(offset + count))]
            bundle["link"].append({"relation": "next", "url": self._url(resource_type, following)})
        return bundle

    def _url(self, path: str, items: list[tuple[str, str]]) -> str:
        return f"{self.base_url}{path}" + (f"?{urlencode(items)}" if items else "")

    def search_bundles(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        items = _items(params)
        if not any(name == "_count" for name, _ in items):
            items.append(("_count", str(self.page_size)))
        with self._lock:
            bundle = self._search_page(resource_type, items)
        while True:
            yield bundle
            link = next((item["url"] for item in bundle.get("link") or [] if item.get("relation") == "next"), None)
            if not link:
                return
            bundle = self.get_path(next_link_path(link, self.base_url))

    def search(self, resource_type: str, params: Params | None = None) -> Iterator[dict]:
        for bundle in self.search_bundles(resource_type, params):
            for entry in bundle.get("entry") or []:
                yield entry["resource"]

    def everything(self, patient_id: str, params: Params | None = None) -> Iterator[dict]:
        with self._lock:
            self.requests["everything"] += 1
            patient = copy.deepcopy(self._current("Patient", patient_id))
            related = [copy.deepcopy(r) for (rtype, id), versions in self._versions.items()
                       if (r := versions[-1]) is not None and (rtype, id) != ("Patient", patient_id)
                       and any(pid == patient_id for _, pid in patient_references(r))]
        yield patient
        yield from related

    def get_path(self, path: str) -> dict:
        parts = urlsplit(path)
        segments = [s for s in parts.path.strip("/").split("/") if s]
        items = parse_qsl(parts.query, keep_blank_values=True)
        with self._lock:
            if segments == ["metadata"]:
                return self.capability()
            if len(segments) == 1:
                return self._search_page(segments[0], items)
            if len(segments) == 2:
                return self.read(*segments)
            if len(segments) == 4 and segments[2] == "_history":
                return self.vread(segments[0], segments[1], segments[3])
        raise FhirError(f"GET {path.split('?')[0]}: not supported by InMemoryFhir", status=400)

    def capability(self) -> dict:
        self.requests["capability"] += 1
        interactions = [{"code": c} for c in ("read", "vread", "update", "create", "delete", "history-instance",
                                                "search-type")]
        compartment = dict(patient_compartment())
        compartment["Provenance"] = tuple(dict.fromkeys((*compartment.get("Provenance", ()), "target")))
        resources = [{"type": "Patient", "interaction": interactions,
                      "searchParam": [{"name": "identifier", "type": "token"}, {"name": "link", "type": "reference"}],
                      "operation": [{"name": "everything",
                                     "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}]}]
        resources += [{"type": rtype, "interaction": interactions,
                       "searchParam": [{"name": p, "type": "reference"} for p in params]}
                      for rtype, params in sorted(compartment.items()) if rtype != "Patient"]
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                "format": ["json"], "rest": [{"mode": "server", "resource": resources}]}

    # --- writes ----------------------------------------------------------------------------------
    def create(self, resource: dict) -> dict:
        with self._lock:
            self.requests["create"] += 1
            resource = {**resource, "id": f"{resource['resourceType'][:3].lower()}{next(self._ids):05d}"}
            return self._store(resource)

    def update(self, resource: dict, *, if_match: str | None = None) -> dict:
        with self._lock:
            self.requests["update"] += 1
            self._check_version(resource["resourceType"], resource["id"], if_match)
            return self._store(resource)

    def batch(self, entries: list[dict]) -> list[EntryOutcome]:
        with self._lock:
            self.requests["batch"] += 1
            return [self._entry(entry) for entry in entries]

    def _entry(self, entry: dict) -> EntryOutcome:
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        path = str(request.get("url", "")).split("?")[0].strip("/").split("/")
        try:
            if method == "GET":
                resource = self._current(path[0], path[1])
                return EntryOutcome(200, copy.deepcopy(resource), _etag(resource), None, None)
            if method == "DELETE":
                self.delete(path[0], path[1])
                return EntryOutcome(204, None, None, None, None)
            if method == "POST":
                resource = self.create(entry["resource"])
                return EntryOutcome(201, resource, _etag(resource), _location(resource), None)
            if method == "PUT":
                resource = entry["resource"]
                if [resource.get("resourceType"), resource.get("id")] != path[:2]:
                    return EntryOutcome(400, None, None, None, _outcome("invalid"))
                created = (resource["resourceType"], resource["id"]) not in self._versions
                self._check_version(path[0], path[1], request.get("ifMatch"))
                written = self._store(resource)
                return EntryOutcome(201 if created else 200, written, _etag(written), _location(written), None)
        except FhirError as error:
            return EntryOutcome(error.status or 400, None, None, None, error.outcome or _outcome("processing"))
        return EntryOutcome(400, None, None, None, _outcome("not-supported"))


def _etag(resource: dict) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


def _location(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


def _outcome(code: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}


# --- everything wired ----------------------------------------------------------------------------------


class FakeServices:
    """Every fake and the services built on them, as ``shared.bootstrap`` wires the real ones."""

    def __init__(self, settings, fhir: InMemoryFhir | None = None, jobs: Sequence[dict] = ()):
        from shared.services.matching import MatchingService
        from shared.services.merge_requests import MergeRequests
        from shared.services.report import ReportSources
        from shared.services.review import ReviewService

        self.settings = settings
        self.fhir = fhir if fhir is not None else InMemoryFhir()
        self.reviews = InMemoryReviewItems()
        self.groups = InMemoryGroups(self.reviews)
        self.keys = InMemoryPatientKeys()
        self.backfill_runs = InMemoryBackfillRuns()
        self.jobs = InMemoryMergeJobs(jobs)
        self.publisher = RecordingPublisher()
        self.requests = MergeRequests(settings, self.groups, self.publisher)
        self.matching = MatchingService(settings, self.groups, self.keys, self.fhir, self.requests)
        self.review = ReviewService(self.reviews, self.groups, self.matching, self.fhir)
        self.report_sources = ReportSources(keys=self.keys, groups=self.groups, reviews=self.reviews, jobs=self.jobs)

    def merge_requests_published(self) -> list[dict]:
        """The merge-requests messages sent, as their JSON bodies carry them."""
        return [message.to_dict() for topic, message in self.publisher.sent if topic == "topic_merge_requests"]


def patient_resource(settings, name: str | None, nik: str | None = None, *, birth: str | None = "1990-05-15",
                     gender: str | None = "male", nik_ibu: str | None = None, phone: str | None = None,
                     source: str | None = None, **extra) -> dict:
    """A Patient to ``create``: NIK under ``settings.nik_system``, a mother's NIK under ``nik_ibu_system``."""
    resource: dict[str, Any] = {"resourceType": "Patient", "active": True, **extra}
    if name:
        resource["name"] = [{"text": name}]
    if birth:
        resource["birthDate"] = birth
    if gender:
        resource["gender"] = gender
    identifiers = list(resource.pop("identifier", []))
    if nik:
        identifiers.append({"system": settings.nik_system, "value": nik})
    if nik_ibu:
        identifiers.append({"system": settings.nik_ibu_system, "value": nik_ibu})
    if identifiers:
        resource["identifier"] = identifiers
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    if source:
        resource["meta"] = {"source": f"urn:source:{source}"}
    return resource
