"""The end state every contender must reach, compared modulo the choice of master.

Per benchmark NIK: exactly one active patient; every other patient of the NIK inactive with a
``replaced-by`` link to it. In the whole store: no resource references an inactive duplicate, every
resource that referenced any patient of a NIK now references that NIK's active patient, and every type
holds as many resources as were loaded (nothing deleted; the Provenance our pipeline writes per merge
and its rest-hook Subscription are new resources, counted apart).

``signature`` reduces the store to what must be equal between contenders: each resource's content with
the benchmark patients' ids replaced by their NIK's index, and server-set ``meta`` dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from shared.concurrency import run_concurrently
from shared.fhir.client import FhirClient
from shared.fhir.references import patient_references, rewrite_patient_references
from tools.bench.dataset import BenchStore

# Written by our pipeline itself (one Provenance per merge; the rest-hook Subscription it registers).
PIPELINE_OWN_TYPES = ("Provenance", "Subscription")


@dataclass
class StateReport:
    problems: list[str] = field(default_factory=list)
    masters: dict[str, str] = field(default_factory=dict)      # NIK index -> active patient id
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)        # PIPELINE_OWN_TYPES found
    signature: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def _replaced_by(patient: dict) -> str | None:
    for link in patient.get("link") or []:
        if link.get("type") == "replaced-by":
            return ((link.get("other") or {}).get("reference") or "").removeprefix("Patient/")
    return None


def _strip(resource: dict) -> dict:
    out = dict(resource)
    out.pop("meta", None)
    return out


def check_state(fhir: FhirClient, store: BenchStore, *, workers: int = 8) -> StateReport:
    report = StateReport()
    nik_of: dict[str, str] = {}       # patient id -> NIK index ("nik-007")
    for index, (_, ids) in enumerate(sorted(store.niks.items())):
        for pid in ids:
            nik_of[pid] = f"nik-{index:03d}"

    def read_all(resource_type: str) -> tuple[str, list[dict]]:
        return resource_type, [r for r in fhir.search(resource_type, {"_count": "1000"})
                               if r.get("resourceType") == resource_type]

    types = sorted(set(store.resource_types) | set(PIPELINE_OWN_TYPES))
    everything = dict(run_concurrently(read_all, types, workers))
    for rtype in PIPELINE_OWN_TYPES:
        report.extra[rtype] = len(everything.pop(rtype, []))
    expected = store.counts
    for rtype, resources in everything.items():
        report.counts[rtype] = len(resources)
        if len(resources) != expected.get(rtype, 0):
            report.problems.append(f"{rtype}: {len(resources)} resources, {expected.get(rtype, 0)} loaded")

    patients = {p["id"]: p for p in everything.get("Patient", [])}
    inactive: set[str] = set()
    master_of_nik: dict[str, str] = {}
    for nik_index in sorted(set(nik_of.values())):
        members = [pid for pid, n in nik_of.items() if n == nik_index]
        active = [pid for pid in members if patients.get(pid, {}).get("active", True)]
        if len(active) != 1:
            report.problems.append(f"{nik_index}: {len(active)} active patients of {len(members)}")
            continue
        master = active[0]
        master_of_nik[nik_index] = master
        for pid in members:
            if pid != master:
                inactive.add(pid)
                if _replaced_by(patients.get(pid, {})) != master:
                    report.problems.append(f"{nik_index}: Patient/{pid} is not replaced-by the active patient")
    report.masters = master_of_nik

    digest = hashlib.sha256()
    for rtype in sorted(everything):
        for resource in sorted(everything[rtype], key=lambda r: r["id"]):
            if rtype != "Patient":
                for _, pid in patient_references(resource):
                    if pid in inactive:
                        report.problems.append(f"{rtype}/{resource['id']} references an inactive duplicate")
                    elif pid in nik_of and master_of_nik.get(nik_of[pid]) != pid:
                        report.problems.append(f"{rtype}/{resource['id']} references a patient that is not "
                                               f"its NIK's active one")
                canonical, _ = rewrite_patient_references(_strip(resource), nik_of)
            else:
                # Patients: only what the check above established (masters differ by design).
                canonical = {"id": nik_of.get(resource["id"], resource["id"]),
                             "nik_member": resource["id"] in nik_of}
            digest.update(json.dumps(canonical, sort_keys=True).encode())
    report.signature = digest.hexdigest()[:16]
    return report
