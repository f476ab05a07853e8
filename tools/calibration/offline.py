"""The evaluation's offline mode: the production decision path without the stack.

A generated district's (or a converted FEBRL benchmark's, ``tools/dataset/febrl.py``) Patients go into
``tests.fakes.InMemoryFhir`` (PUT with their ids, as the loader does), and each one is handled by
``MatchingService.handle_change`` for a Healthcare-API-style change without the resource (so it is read
from FHIR, as ``match-patient`` does), in the order the stack mode delivers them (bulk, then stream),
one at a time. The index and review items are read from the
in-memory repositories, whose documents are exactly what Firestore would hold; ``matching_score``
scores them. Same code as production minus the I/O: a 10,000-patient district takes seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.domain.patient import patient_facts
from shared.messages import PatientChange
from tools.calibration.matching_score import EVAL_SETS, score_run
from tools.dataset.generate import Params, generate, iter_resources


@dataclass
class OfflineRun:
    resources: dict[str, dict]     # patient id -> the stored Patient (with meta.versionId)
    group_docs: list[dict]         # nik_index and demographic_index documents
    review_docs: list[dict]
    seconds: float                 # handling time of every change (loading excluded)


def patients_in_order(directory: Path) -> list[dict]:
    return [p for phase in ("bulk", "stream") for p in iter_resources(directory, phase, "Patient")]


# What the batch backfill knows before deciding (``MatchingService.expect``): the bulk phase (the store
# when the pipeline starts; the default, what production does), every record (a backfill of the whole
# store, the order-independent bound), or nothing (every record arrives one at a time).
BACKFILL_KNOWS = ("bulk", "all", "none")


def run_offline(directory: Path, settings: Settings, backfill_knows: str = "bulk") -> OfflineRun:
    from tests.fakes import FakeServices, InMemoryFhir

    fhir = InMemoryFhir()
    patients = patients_in_order(directory)
    for patient in patients:
        fhir.update(patient)
    services = FakeServices(settings, fhir)
    started = time.perf_counter()
    # The bulk phase is what a batch backfill decides, knowing all of its records before deciding
    # (``MatchingService.expect``); the stream phase arrives one record at a time, with no such knowledge.
    phases = {"bulk": ("bulk",), "all": ("bulk", "stream"), "none": ()}[backfill_knows]
    services.matching.expect(patient_facts(p, settings) for phase in phases
                             for p in iter_resources(directory, phase, "Patient"))
    for patient in patients:
        services.matching.handle_change(PatientChange(patient["id"], "upsert"))
    seconds = time.perf_counter() - started
    return OfflineRun(resources={p["id"]: p for p in fhir.resources("Patient")},
                      group_docs=list(services.groups.docs.values()),
                      review_docs=list(services.reviews.docs.values()), seconds=seconds)


def is_fixed_set(set_name: str) -> bool:
    """A public benchmark (FEBRL): fixed data, so a seed and a size do not apply."""
    return "febrl" in EVAL_SETS[set_name]


def write_set(set_name: str, seed: int | None, patients: int, settings: Settings, workdir: Path) -> Path:
    """The set's district (Patients only) in a directory under ``workdir``: generated for ``seed`` and
    ``patients``, or a FEBRL benchmark converted (both ignored)."""
    if is_fixed_set(set_name):
        from tools.dataset.febrl import convert

        directory = workdir / set_name
        convert(EVAL_SETS[set_name]["febrl"], directory, settings)
        return directory
    directory = workdir / f"{set_name}-seed{seed}-{patients}"
    if EVAL_SETS[set_name].get("generator") == "redteam":
        from tools.dataset import redteam

        redteam.generate(directory, seed, patients, settings)
        return directory
    generate(directory, Params(patients=patients, seed=seed, resources_per_patient=0.0, **EVAL_SETS[set_name]),
             settings)
    return directory


def evaluate_offline(set_name: str, seed: int | None, patients: int, settings: Settings, workdir: Path,
                     backfill_knows: str = "bulk") -> dict:
    """Writes the set's district (``write_set``), runs it offline and scores it: ``score_run``'s figures
    plus the set, seed (``"fixed"`` for a benchmark) and timings."""
    began = time.perf_counter()
    directory = write_set(set_name, seed, patients, settings, workdir)
    generated = time.perf_counter() - began
    truth = json.loads((directory / "ground_truth.json").read_text())
    run = run_offline(directory, settings, backfill_knows)
    figures = score_run(truth, run.resources, run.group_docs, run.review_docs, settings)
    return {"set": set_name, "seed": "fixed" if is_fixed_set(set_name) else seed, **figures,
            "seconds_generate": round(generated, 2), "seconds_matching": round(run.seconds, 2)}
