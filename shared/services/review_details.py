"""What a reviewer sees of one review item: the records side by side (from FHIR), how they compare,
how many clinical resources hang on each record, the whole candidate cluster, and the group's history.

Read-only. The NIK appears masked (last four digits); the full value only through
``ReviewService.reveal_nik``, which is audited. Nothing here is logged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.domain.audit import AuditEntry
from shared.domain.group import Group, is_live
from shared.domain.patient import _keyed, _source, normalise_address, normalise_phone
from shared.domain.review import ReviewItem
from shared.fhir.compartment import reference_search_plan
from shared.fhir.errors import FhirError, Gone, NotFound
from shared.fhir.references import references_any
from shared.names import normalise_name
from shared.nik import NikError, nik_token
from shared.ports.fhir import FhirPort
from shared.services.rewrite import supports_everything

# Fields compared across the records, in the order the page shows them.
COMPARED_FIELDS = ("name", "nik", "birth_date", "gender", "address", "phone", "source", "mrn")


@dataclass
class RecordView:
    """One patient as the reviewer compares it (display values; ``compare`` holds normalised ones)."""
    id: str
    missing: bool = False
    names: list[str] = field(default_factory=list)
    nik_masked: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    addresses: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    source: str | None = None
    mrns: list[str] = field(default_factory=list)          # "system|value" of the non-NIK identifiers
    last_updated: str | None = None
    active: bool = True
    status: str | None = None                               # the index member's status (merged, review, ...)
    resource_counts: dict[str, int] = field(default_factory=dict)
    compare: dict[str, str | None] = field(default_factory=dict)


@dataclass
class GroupHistory:
    items: list[ReviewItem]            # every review item of the group (decided ones too)
    jobs: list[dict]                   # its merge jobs (done, failed, unmerged, running)
    audit: list[AuditEntry]            # decisions, skips, NIK reveals, unmerges


@dataclass
class ItemDetails:
    item: ReviewItem
    records: list[RecordView]
    agreement: dict[str, str]          # field -> "agree" | "differ" | "missing"
    cluster: list[str]                 # live members of the group beyond the item's patients
    history: GroupHistory


def _mask(nik: str) -> str:
    return "•" * (len(nik) - 4) + nik[-4:]


def _niks(patient: dict, settings: Settings) -> list[str]:
    values = [i.get("value") for i in patient.get("identifier") or [] if isinstance(i, dict)
              and i.get("system") in (settings.nik_system, settings.nik_ibu_system) and i.get("value")]
    return [str(v) for v in values]


def nik_of(patient: dict, settings: Settings) -> str | None:
    """The patient's NIK as written (its own, else the mother's for a newborn)."""
    own = [str(i.get("value")) for i in patient.get("identifier") or []
           if isinstance(i, dict) and i.get("system") == settings.nik_system and i.get("value")]
    return (own or _niks(patient, settings) or [None])[0]


def record_view(patient_id: str, patient: dict | None, settings: Settings) -> RecordView:
    if patient is None:
        return RecordView(patient_id, missing=True)
    names = [n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""]).strip()
             for n in patient.get("name") or [] if isinstance(n, dict)]
    names = [n for n in names if n]
    addresses = [a.get("text") or ", ".join([*(a.get("line") or []), a.get("city") or ""]).strip(", ")
                 for a in patient.get("address") or [] if isinstance(a, dict)]
    phones = [t.get("value") for t in patient.get("telecom") or []
              if isinstance(t, dict) and t.get("system") == "phone" and t.get("value")]
    nik = nik_of(patient, settings)
    try:
        nik_key = nik_token(nik, settings.nik_hash_key) if nik else None
    except NikError:   # compared as written, still keyed
        nik_key = _keyed("nik-as-written", nik, settings.nik_hash_key.get_secret_value())
    mrns = [f"{i.get('system', '')}|{i.get('value', '')}" for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") not in (settings.nik_system, settings.nik_ibu_system)]
    source = _source(patient)
    view = RecordView(
        patient_id, names=names, nik_masked=_mask(nik) if nik else None, birth_date=patient.get("birthDate"),
        gender=patient.get("gender"), addresses=[a for a in addresses if a], phones=phones, source=source,
        mrns=mrns, last_updated=(patient.get("meta") or {}).get("lastUpdated"), active=patient.get("active", True))
    view.compare = {
        "name": normalise_name(names[0]).text if names else None,
        "nik": nik_key,   # keyed token: the page compares NIKs without holding them
        "birth_date": view.birth_date, "gender": view.gender,
        "address": normalise_address(addresses[0]) if addresses else None,
        "phone": normalise_phone(phones[0]) if phones else None,
        "source": source, "mrn": ",".join(sorted(mrns)) or None,
    }
    return view


def agreement(records: list[RecordView]) -> dict[str, str]:
    result = {}
    for name in COMPARED_FIELDS:
        values = [r.compare.get(name) for r in records if not r.missing]
        present = [v for v in values if v]
        if len(present) < 2:
            result[name] = "missing"
        else:
            result[name] = "agree" if len(set(present)) == 1 and len(present) == len(values) else "differ"
    return result


class ResourceCounter:
    """Clinical resources per type referencing one patient: one ``$everything`` when the server has
    it, else one ``_summary=count`` search per type of the patient compartment."""

    def __init__(self, fhir: FhirPort, settings: Settings):
        self._fhir = fhir
        self._settings = settings
        self._capability: dict | None = None

    def _plan(self) -> tuple[bool, dict[str, list[str]]]:
        if self._capability is None:
            self._capability = self._fhir.capability()
        plan, _ = reference_search_plan(self._capability)
        return supports_everything(self._capability), plan

    def counts(self, patient_id: str) -> dict[str, int]:
        everything, plan = self._plan()
        if everything:
            found: Counter = Counter()
            for resource in self._fhir.everything(patient_id):
                rtype = resource.get("resourceType")
                if rtype != "Patient" and references_any(resource, [patient_id]):
                    found[rtype] += 1
            return dict(sorted(found.items()))

        def count(item):
            rtype, params = item
            bundle = self._fhir.get_path(f"{rtype}?{params[0]}=Patient/{patient_id}&_summary=count")
            return rtype, int(bundle.get("total") or 0)

        pairs = run_concurrently(count, sorted((t, p) for t, p in plan.items() if p and t != "Patient"),
                                 self._settings.fhir_concurrency)
        return {t: n for t, n in pairs if n}


def read_patients(fhir: FhirPort, patient_ids: list[str], concurrency: int) -> dict[str, dict | None]:
    def read(pid):
        try:
            return pid, fhir.read("Patient", pid)
        except (NotFound, Gone):
            return pid, None
    return dict(run_concurrently(read, patient_ids, concurrency))


def build_records(fhir: FhirPort, counter: ResourceCounter, settings: Settings, patient_ids: list[str],
                  group: Group | None) -> list[RecordView]:
    patients = read_patients(fhir, patient_ids, settings.fhir_concurrency)

    def view(pid):
        record = record_view(pid, patients.get(pid), settings)
        record.status = group.status_of(pid) if group else None
        if not record.missing:
            try:
                record.resource_counts = counter.counts(pid)
            except FhirError:
                record.resource_counts = {}
        return record
    return run_concurrently(view, patient_ids, settings.fhir_concurrency)


def cluster_of(group: Group | None, item: ReviewItem) -> list[str]:
    """The group's other live members: the rest of the candidate cluster."""
    if group is None:
        return []
    return sorted(pid for pid, member in group.members.items() if pid not in item.patient_ids and is_live(member))
