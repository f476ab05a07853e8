"""Every Pub/Sub message of the pipeline, as typed values (docs/DESIGN.md, "Pub/Sub messages").
Pure: no I/O, no logging.

Each message the pipeline publishes is a frozen dataclass that validates itself; ``to_json()`` is
its body (compact JSON, sorted keys) and ``from_json(data)`` / ``from_dict(body)`` read one back
(unknown keys are ignored). ``topic_setting`` names the ``Settings`` field of its topic.
``decode(event_data, message_type)`` reads one out of a Pub/Sub CloudEvent's data.

The patient-changes topic carries what others publish (the Healthcare API, the subscription relay):
``shared.notifications.parse_patient_change`` decodes those formats into ``PatientChange``s (or
``Ignored``).

Anything that cannot be understood raises ``MalformedEvent`` (alias ``MalformedMessage``) with a
short reason code (never a value from the message); events about other resource types come back as
``Ignored``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from shared.fhir.ids import FHIR_ID_PATTERN, is_fhir_id

_ID = FHIR_ID_PATTERN
RESOURCE_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")


class MalformedEvent(ValueError):
    """A message no redelivery can make valid; ``reason`` is a short code, never a message value."""

    def __init__(self, reason: str):
        super().__init__(f"malformed event: {reason}")
        self.reason = reason


MalformedMessage = MalformedEvent

M = TypeVar("M", bound="Message")


def json_body(data: bytes) -> object:
    """A message body as JSON; ``MalformedEvent`` when it is not."""
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON, or a number past int()'s 4,300-digit limit
        raise MalformedEvent("bad-json") from None
    except RecursionError:  # nesting deeper than the interpreter's stack (a forged or broken body)
        raise MalformedEvent("json-too-deep") from None


_is_id = is_fhir_id


def _require_str(value: object, name: str) -> None:
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"missing-{name}")


class Message(ABC):
    """What every message the pipeline publishes has: its topic's setting and a JSON body."""

    topic_setting: ClassVar[str]

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The message's JSON body as a dict."""

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    @abstractmethod
    def from_dict(cls: type[M], body: Mapping) -> M:
        """The message from a decoded body; ``MalformedEvent`` when it does not validate."""

    @classmethod
    def from_json(cls: type[M], data: bytes) -> M:
        body = json_body(data)
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        return cls.from_dict(body)


# --- the messages the pipeline publishes -----------------------------------------------------------
@dataclass(frozen=True)
class ForceMerge(Message):
    """ops-force-merge: the only message that carries a raw NIK; it is never logged."""

    topic_setting: ClassVar[str] = "topic_ops_force_merge"
    nik: str = field(repr=False)  # raw NIK: never logged, never stored
    reason: str
    requested_by: str
    patient_ids: tuple[str, ...] = ()

    def __post_init__(self):
        # Types only: matching builds one without a NIK for a reviewer's confirmed group
        # (``MatchingService.confirm_group``); what a message must hold, ``from_dict`` checks.
        for name in ("nik", "reason", "requested_by"):
            if not isinstance(getattr(self, name), str):
                raise MalformedEvent(f"missing-{name.replace('_', '-')}")
        if not isinstance(self.patient_ids, tuple) or not all(isinstance(p, str) for p in self.patient_ids):
            raise MalformedEvent("bad-patient-ids")

    def to_dict(self) -> dict[str, Any]:
        return {"nik": self.nik, "reason": self.reason, "requested_by": self.requested_by,
                "patient_ids": list(self.patient_ids)}

    @classmethod
    def from_dict(cls, body: Mapping) -> ForceMerge:
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        nik = body.get("nik")
        if not isinstance(nik, (str, int)) or not str(nik).strip():
            raise MalformedEvent("missing-nik")
        reason, requested_by = body.get("reason"), body.get("requested_by")
        if not isinstance(reason, str) or not reason.strip():
            raise MalformedEvent("missing-reason")
        if not isinstance(requested_by, str) or not requested_by.strip():
            raise MalformedEvent("missing-requested-by")
        patient_ids = body.get("patient_ids") or []
        if not isinstance(patient_ids, list) or not all(_is_id(p) for p in patient_ids):
            raise MalformedEvent("bad-patient-ids")
        return cls(str(nik), reason.strip(), requested_by.strip(), tuple(dict.fromkeys(patient_ids)))


@dataclass(frozen=True)
class MergeRequested(Message):
    """merge-requests: the authoritative request is the group document's; the fan-out claims it."""

    topic_setting: ClassVar[str] = "topic_merge_requests"
    request_id: str
    group: str  # "nik_index/<token>" or "demographic_index/<token>"
    nik_token: str
    master: str
    duplicates: tuple[str, ...]
    reason: str | None = None
    requested_by: str | None = None
    evidence: dict = field(default_factory=dict)

    def __post_init__(self):
        _require_str(self.request_id, "request_id")
        if not isinstance(self.group, str) or "/" not in self.group:
            raise MalformedEvent("missing-group")
        _require_str(self.nik_token, "nik_token")
        if not _is_id(self.master):
            raise MalformedEvent("missing-master")
        if not isinstance(self.duplicates, tuple) or not all(_is_id(d) for d in self.duplicates):
            raise MalformedEvent("bad-duplicates")
        for name in ("reason", "requested_by"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise MalformedEvent(f"bad-{name.replace('_', '-')}")
        if not isinstance(self.evidence, dict):
            raise MalformedEvent("bad-evidence")

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "group": self.group, "nik_token": self.nik_token,
                "master": self.master, "duplicates": list(self.duplicates), "reason": self.reason,
                "requested_by": self.requested_by, "evidence": dict(self.evidence)}

    @classmethod
    def from_dict(cls, body: Mapping) -> MergeRequested:
        """Also reads the index's request dict (``public_request``: its extra ``id`` is ignored)."""
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        nik_token = body.get("nik_token")
        group = body.get("group") or (f"nik_index/{nik_token}" if isinstance(nik_token, str) and nik_token else None)
        if nik_token is None and isinstance(group, str):
            nik_token = group.split("/", 1)[-1]
        duplicates = body.get("duplicates")
        evidence = body.get("evidence") or {}
        return cls(request_id=body.get("request_id"), group=group, nik_token=nik_token, master=body.get("master"),
                   duplicates=tuple(duplicates) if isinstance(duplicates, list) else duplicates,
                   reason=body.get("reason"), requested_by=body.get("requested_by"),
                   evidence=dict(evidence) if isinstance(evidence, Mapping) else evidence)


@dataclass(frozen=True)
class MergeTask(Message):
    """merge-tasks: one resource type of a merge job. ``resources``: what the fan-out found in that
    type referencing a duplicate (never Patients); None: the worker searches."""

    topic_setting: ClassVar[str] = "topic_merge_tasks"
    job_id: str
    resource_type: str
    resources: tuple[dict, ...] | None = field(default=None, repr=False)

    def __post_init__(self):
        _require_str(self.job_id, "job_id")
        if not isinstance(self.resource_type, str) or not RESOURCE_TYPE_NAME.fullmatch(self.resource_type):
            raise MalformedEvent("bad-resource-type")
        if self.resources is not None and not self._usable(self.resources, self.resource_type):
            raise MalformedEvent("bad-resources")

    @staticmethod
    def _usable(resources: object, resource_type: str) -> bool:
        return isinstance(resources, (list, tuple)) and all(
            isinstance(r, dict) and r.get("resourceType") == resource_type and _is_id(r.get("id"))
            for r in resources)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": self.job_id, "resource_type": self.resource_type}
        if self.resources is not None:
            body["resources"] = list(self.resources)
        return body

    @classmethod
    def from_dict(cls, body: Mapping) -> MergeTask:
        """Resources that are not usable are dropped (the worker searches instead), as before."""
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        resource_type, listed = body.get("resource_type"), body.get("resources")
        resources = tuple(listed) if isinstance(resource_type, str) and cls._usable(listed, resource_type) else None
        return cls(job_id=body.get("job_id"), resource_type=resource_type, resources=resources)


@dataclass(frozen=True)
class FinaliseMerge(Message):
    """merge-finalise: every task of the job is done."""

    topic_setting: ClassVar[str] = "topic_merge_finalise"
    job_id: str

    def __post_init__(self):
        _require_str(self.job_id, "job_id")

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    @classmethod
    def from_dict(cls, body: Mapping) -> FinaliseMerge:
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        return cls(job_id=body.get("job_id"))


@dataclass(frozen=True)
class ReconcileRun(Message):
    """ops-reconcile (Cloud Scheduler): ``full`` also reads every resource of every type."""

    topic_setting: ClassVar[str] = "topic_ops_reconcile"
    full: bool = False

    def __post_init__(self):
        if not isinstance(self.full, bool):
            raise MalformedEvent("full-not-boolean")

    def to_dict(self) -> dict[str, Any]:
        return {"full": self.full}

    @classmethod
    def from_dict(cls, body: Mapping) -> ReconcileRun:
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        return cls(full=body.get("full", False))


@dataclass(frozen=True)
class SweepRun(Message):
    """ops-sweep (Cloud Scheduler): continue or fail stuck merge work. ``older_than_seconds``
    overrides ``Settings.stuck_after_seconds`` (ops, tests)."""

    topic_setting: ClassVar[str] = "topic_ops_sweep"
    older_than_seconds: int | None = None

    def __post_init__(self):
        value = self.older_than_seconds
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise MalformedEvent("older-than-not-a-count")

    def to_dict(self) -> dict[str, Any]:
        return {} if self.older_than_seconds is None else {"older_than_seconds": self.older_than_seconds}

    @classmethod
    def from_dict(cls, body: Mapping) -> SweepRun:
        if not isinstance(body, Mapping):
            raise MalformedEvent("bad-body")
        return cls(older_than_seconds=body.get("older_than_seconds"))


# --- the CloudEvent around a message ---------------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    message_id: str | None
    attributes: dict
    data: bytes


def envelope(event_data: object) -> Envelope:
    """The Pub/Sub message inside a ``messagePublished`` CloudEvent's data."""
    if not isinstance(event_data, Mapping):
        raise MalformedEvent("no-message")
    message = event_data.get("message")
    if not isinstance(message, Mapping):
        raise MalformedEvent("no-message")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise MalformedEvent("bad-attributes")
    raw = message.get("data") or ""
    if not isinstance(raw, (str, bytes, bytearray)):  # bytes(<int>) would allocate that many bytes
        raise MalformedEvent("bad-data")
    try:
        data = base64.b64decode(raw, validate=True) if isinstance(raw, str) else bytes(raw)
    except (binascii.Error, ValueError):
        raise MalformedEvent("bad-base64") from None
    message_id = message.get("messageId") or message.get("message_id")
    return Envelope(str(message_id) if message_id else None, {str(k): str(v) for k, v in attributes.items()},
                    data)


def message_id(event_data: object) -> str | None:
    """The Pub/Sub message id of a CloudEvent's data, for logs (also of a malformed one)."""
    message = event_data.get("message") if isinstance(event_data, dict) else None
    return (message.get("messageId") or message.get("message_id")) if isinstance(message, dict) else None


def decode(event_data: object, message_type: type[M]) -> M:
    """The ``message_type`` message a Pub/Sub CloudEvent's data carries; ``MalformedEvent`` otherwise."""
    return message_type.from_json(envelope(event_data).data)


# --- patient-changes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ignored:
    reason: str  # e.g. "not-patient", "ping", "no-focus"


class ChangeSource(StrEnum):
    """Who announced a patient change (decided by the decoder, ``shared.notifications``)."""

    HEALTHCARE_API = "healthcare-api"      # the store's own notification (resource name or resource)
    FHIR_SUBSCRIPTION = "fhir-subscription"  # a rest-hook body relayed by subscription-relay
    BACKFILL = "backfill"                  # a page the backfill read from the store itself


@dataclass(frozen=True)
class PatientChange:
    """One patient change announced on patient-changes (decoded only: others publish it).

    ``trusted``: whether ``resource``, ``version`` and a delete may be believed as they are. Only what
    nobody else can publish is: the Healthcare API's own notification topic when Terraform grants
    publish on it to the Healthcare service agent alone, and what the pipeline read from the store.
    Anything else is a hint: matching reads the Patient by id before acting (docs/DESIGN.md)."""

    topic_setting: ClassVar[str] = "topic_patient_changes"
    patient_id: str
    action: str  # "upsert" | "delete"
    version: str | None = None  # versionId when the event names one
    resource: dict | None = field(default=None, repr=False)  # None: read it from FHIR
    source: ChangeSource = ChangeSource.HEALTHCARE_API
    trusted: bool = False
