"""The benchmark's store: the field report's 68 NIKs (2-10 patients each, tens of resources per patient
over the resource types a district uses) inside a larger body of single patients.

Built with the district generator's own people, names and clinical records (``tools.dataset``), with
two changes of shape: every record of a benchmark NIK carries the NIK cleanly and the same
demographics (the report's operator knew these NIKs were duplicates), and the background holds single
patients only, so the 68 NIKs are the only duplicates. Eight more Patient-referencing types are added
per patient to reach the report's 27 types.

The store is loaded once straight into a FHIR server (no proxy); that server's stopped data directory
is the template every contender starts from (``clone_server``), so all start from the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.fhir.client import FhirClient
from tools.dataset.generate import COPIES_WEIGHTS, DistrictGenerator, NdjsonWriter, Params, iter_resources
from tools.dataset.load import dataset_counts, load_dataset
from tools.runtime.stack import FhirServer, start_fhir_server

BENCH_FILE = "bench.json"

# The report checked 27 types: the district generator's 19 clinical types and these 8, each written
# once per patient record with this probability.
EXTRA_TYPES = {
    "MedicationDispense": 0.5, "MedicationStatement": 0.4, "Communication": 0.3, "Consent": 0.3,
    "RelatedPerson": 0.2, "ClaimResponse": 0.3, "Media": 0.1, "Account": 0.3,
}


@dataclass(frozen=True)
class BenchStore:
    directory: Path               # NDJSON (tools.dataset layout), manifest.json, bench.json
    niks: dict[str, list[str]]    # benchmark NIK -> its patient ids

    @property
    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for phase in dataset_counts(self.directory).values():
            for rtype, n in phase.items():
                totals[rtype] = totals.get(rtype, 0) + n
        return totals

    @property
    def resource_types(self) -> list[str]:
        return sorted(self.counts)

    def resources(self, resource_type: str):
        yield from iter_resources(self.directory, "bulk", resource_type)

    @classmethod
    def open(cls, directory: Path) -> BenchStore:
        data = json.loads((directory / BENCH_FILE).read_text())
        return cls(directory, data["niks"])


def _ref(resource_type: str, rid: str) -> dict:
    return {"reference": f"{resource_type}/{rid}"}


def _extras(gen: DistrictGenerator, writer: NdjsonWriter, patient: dict) -> None:
    """The eight extra types for one patient record (minimal valid resources)."""
    subject = _ref("Patient", patient["id"])
    text = lambda t: {"text": t}  # noqa: E731
    builders = {
        "MedicationDispense": lambda: {"status": "completed", "medicationCodeableConcept": text("Parasetamol 500 mg"),
                                       "subject": subject},
        "MedicationStatement": lambda: {"status": "active", "medicationCodeableConcept": text("Metformin 500 mg"),
                                        "subject": subject},
        "Communication": lambda: {"status": "completed", "subject": subject,
                                  "payload": [{"contentString": "Pengingat kontrol"}]},
        "Consent": lambda: {"status": "active", "scope": text("patient-privacy"), "category": [text("Persetujuan")],
                            "patient": subject},
        "RelatedPerson": lambda: {"patient": subject, "relationship": [text("Keluarga")]},
        "ClaimResponse": lambda: {"status": "active", "type": text("professional"), "use": "claim",
                                  "patient": subject, "created": "2025-01-15",
                                  "insurer": _ref("Organization", gen.bpjs["id"]),
                                  "outcome": "complete"},
        "Media": lambda: {"status": "completed", "subject": subject,
                          "content": {"contentType": "text/plain", "data": "Rm90bw=="}},
        "Account": lambda: {"status": "active", "subject": [subject]},
    }
    for rtype, chance in EXTRA_TYPES.items():
        if gen.chance(chance):
            writer.write("bulk", {"resourceType": rtype, "id": gen.new_id(), **builders[rtype]()})


def build_store(directory: Path, *, niks: int = 68, background: int = 2000, resources_per_patient: float = 30.0,
                background_resources: float = 10.0, seed: int = 68, settings: Settings | None = None) -> BenchStore:
    """Writes the benchmark store's NDJSON into ``directory`` (one phase, ``bulk``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*/*.ndjson"):
        old.unlink()
    settings = settings or Settings()
    writer = NdjsonWriter(directory)
    params = Params(patients=niks * 3 + background, seed=seed, resources_per_patient=resources_per_patient,
                    bulk_fraction=1.0)
    gen = DistrictGenerator(params, settings, writer)
    duplicate_copies = {k: w for k, w in COPIES_WEIGHTS.items() if k >= 2}
    bench_niks: dict[str, list[str]] = {}
    try:
        for _ in range(niks):
            person = gen.new_person(age_range=(18, 80))
            ids = []
            for source in gen.sources_for(gen.weighted(duplicate_copies)):
                resource, info = gen.patient(person, source, "duplicate", canonical=True, load="bulk")
                gen.emit(resource, info, person)
                _extras(gen, writer, resource)
                ids.append(resource["id"])
            bench_niks[person.nik] = ids
        gen.p = Params(patients=params.patients, seed=seed, resources_per_patient=background_resources,
                       bulk_fraction=1.0)
        for _ in range(background):
            person = gen.new_person()
            resource, info = gen.patient(person, gen.pick(("simrs", "simpus", "sikda", "pcare", "lab")), "single",
                                         load="bulk")
            gen.emit(resource, info, person)
            _extras(gen, writer, resource)
    finally:
        writer.close()
    (directory / "manifest.json").write_text(json.dumps({"params": params.as_json(), "counts": writer.counts},
                                                        indent=1, sort_keys=True) + "\n")
    # The NIKs are synthetic (generated), and this file never leaves the benchmark's temp directory.
    (directory / BENCH_FILE).write_text(json.dumps({"niks": bench_niks}) + "\n")
    return BenchStore(directory, bench_niks)


def load_template(store: BenchStore, template_dir: Path, *, workers: int = 4) -> tuple[float, int]:
    """Loads the store into a new server in ``template_dir`` straight (no proxy), stops it and keeps
    its data directory. Returns (seconds, resources loaded)."""
    shutil.rmtree(template_dir, ignore_errors=True)
    server = start_fhir_server(template_dir)
    try:
        with FhirClient(server.base_url, max_connections=workers * 2) as client:
            report = load_dataset(store.directory, client, batch_size=100, workers=workers, show_progress=False)
    finally:
        server.stop()
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} resources failed to load, e.g. {report.failed[:3]}")
    return report.seconds, report.total_loaded


def clone_server(template_dir: Path, work_dir: Path) -> FhirServer:
    """A FHIR server on a copy of the template's data (same store, byte for byte)."""
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    shutil.copytree(template_dir / "data", work_dir / "data")
    server = start_fhir_server(work_dir)
    server.keep_work_dir = False
    return server
