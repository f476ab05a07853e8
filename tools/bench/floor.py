"""The floor: the same FHIR server behind the same proxy applying the same writes, in batch bundles
of 100 at full concurrency, with no searching and no bookkeeping. The writes are computed from the
store's files beforehand (every resource referencing a duplicate, rewritten; duplicates inactive with
replaced-by; the master tagged), so what is timed is only the server taking them. No pipeline can
beat this by much: it must make at least these writes through the same round trips.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from shared.concurrency import run_concurrently
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.fhir.references import references_any, rewrite_patient_references
from tools.bench.dataset import BenchStore

FLOOR_BATCH_SIZE = 100


@dataclass
class FloorRun:
    seconds: float
    writes: int
    bundles: int
    failed: int


def planned_writes(store: BenchStore, settings: Settings) -> list[dict]:
    """Every write a merge of the benchmark NIKs needs (master = the NIK's first patient here; which
    patient is master does not change the number or size of the writes)."""
    replacements = {dup: ids[0] for ids in store.niks.values() for dup in ids[1:]}
    masters = {ids[0] for ids in store.niks.values()}
    writes: list[dict] = []
    for rtype in store.resource_types:
        for resource in store.resources(rtype):
            if rtype == "Patient":
                if resource["id"] in replacements:
                    patient = copy.deepcopy(resource)
                    master = replacements[resource["id"]]
                    patient["active"] = False
                    patient["link"] = [{"other": {"reference": f"Patient/{master}"}, "type": "replaced-by"}]
                    patient.setdefault("meta", {})["tag"] = [{"system": settings.golden_tag_system, "code": master}]
                    writes.append(patient)
                elif resource["id"] in masters:
                    patient = copy.deepcopy(resource)
                    patient.setdefault("meta", {})["tag"] = [{"system": settings.golden_tag_system,
                                                              "code": resource["id"]}]
                    writes.append(patient)
            elif references_any(resource, replacements):
                writes.append(rewrite_patient_references(resource, replacements)[0])
    return writes


def run_floor(fhir: FhirClient, writes: list[dict], *, workers: int = 16) -> FloorRun:
    bundles = [writes[i:i + FLOOR_BATCH_SIZE] for i in range(0, len(writes), FLOOR_BATCH_SIZE)]

    def send(bundle: list[dict]) -> int:
        outcomes = fhir.batch([{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                               for r in bundle])
        return sum(1 for o in outcomes if not o.ok)

    began = time.perf_counter()
    failed = sum(run_concurrently(send, bundles, workers))
    return FloorRun(time.perf_counter() - began, len(writes), len(bundles), failed)
