"""Throughput of the FHIR client against a fresh local FHIR server (development only).

    .venv/bin/python -m tools.bench.fhir_client --patients 2000 --workers 8

Starts its own empty sekmet server, writes patients in batches of 100 (creates, then ifMatch
updates), reads them one by one (sequentially and from a thread pool) and pages through a search,
then stops the server. Figures depend on the machine's load: note it next to any figure you quote.
"""

from __future__ import annotations

import os
import time

import httpx
import typer

from shared.concurrency import run_concurrently
from shared.fhir.client import FhirClient
from tools.runtime.stack import start_fhir_server

BATCH = 100
SYSTEM = "urn:bench:patient"


def _patient(value: str, id_: str | None = None, gender: str | None = None) -> dict:
    patient = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}
    if id_:
        patient["id"] = id_
    if gender:
        patient["gender"] = gender
    return patient


def main(patients: int = typer.Option(2000, help="patients to write and read"),
         workers: int = typer.Option(8, help="threads for the concurrent reads")) -> None:
    with start_fhir_server() as server, FhirClient(server.base_url) as fhir:
        began = time.perf_counter()
        ids: list[str] = []
        for start in range(0, patients, BATCH):
            outcomes = fhir.batch([{"resource": _patient(str(i)), "request": {"method": "POST", "url": "Patient"}}
                                   for i in range(start, min(start + BATCH, patients))])
            ids += [o.resource["id"] for o in outcomes if o.status == 201]
        create_seconds = time.perf_counter() - began

        began = time.perf_counter()
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            outcomes = fhir.batch([{"resource": _patient(id_, id_, "female"),
                                    "request": {"method": "PUT", "url": f"Patient/{id_}", "ifMatch": 'W/"1"'}}
                                   for id_ in chunk])
            if not all(o.ok for o in outcomes):
                raise SystemExit("an update in the benchmark failed")
        update_seconds = time.perf_counter() - began

        began = time.perf_counter()
        for id_ in ids:
            fhir.read("Patient", id_)
        read_seconds = time.perf_counter() - began

        # The same reads on a bare httpx.Client: what the client's own work costs.
        began = time.perf_counter()
        with httpx.Client(base_url=server.base_url + "/") as bare:
            for id_ in ids:
                bare.get(f"Patient/{id_}").raise_for_status()
        bare_read_seconds = time.perf_counter() - began

        began = time.perf_counter()
        run_concurrently(lambda id_: fhir.read("Patient", id_), ids, max_workers=workers)
        pooled_read_seconds = time.perf_counter() - began

        began = time.perf_counter()
        found = sum(1 for _ in fhir.search("Patient", {"identifier": f"{SYSTEM}|", "_count": "500"}))
        search_seconds = time.perf_counter() - began

    batches = -(-len(ids) // BATCH)
    typer.echo(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    typer.echo(f"batch create x{BATCH}: {batches / create_seconds:.2f} batches/s = "
               f"{len(ids) / create_seconds:.0f} resources/s")
    typer.echo(f"batch update x{BATCH} (ifMatch): {batches / update_seconds:.2f} batches/s = "
               f"{len(ids) / update_seconds:.0f} resources/s")
    typer.echo(f"reads, one thread: {len(ids) / read_seconds:.0f} requests/s; "
               f"{workers} threads: {len(ids) / pooled_read_seconds:.0f} requests/s; "
               f"bare httpx, one thread: {len(ids) / bare_read_seconds:.0f} requests/s")
    typer.echo(f"search of {found} patients in pages of 500: {found / search_seconds:.0f} resources/s")


if __name__ == "__main__":
    typer.run(main)
