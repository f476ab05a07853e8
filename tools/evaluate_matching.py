"""Scores matching against a generated district dataset's ground truth.

    python -m tools.evaluate_matching --patients 1000 --seed 1 [--workers 4] [--dataset DIR]

Starts its own local stack (emulators + an empty FHIR server), generates the dataset (or uses DIR),
loads it, then delivers one Healthcare-API-style notification per Patient (NameOnly, as the
production store is configured) to the real ``match_patient`` entry point, ``--workers`` at a time.
Reports, over pairs of patient records:
- precision / recall of the merge decisions (every pair inside one merge request counts as merged),
- recall on NIK-bearing duplicates (same person, same NIK),
- review items by reason, unmatched records, p50/p95 handling time per event and events/s.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False)
console = Console()


def notification(patient_id: str) -> object:
    from cloudevents.http import CloudEvent

    name = f"projects/local/locations/local/datasets/district/fhirStores/main/fhir/Patient/{patient_id}"
    message = {"data": base64.b64encode(name.encode()).decode(), "messageId": uuid.uuid4().hex,
               "attributes": {"action": "CreateResource", "resourceType": "Patient", "payloadType": "NameOnly",
                              "storeName": "projects/local/locations/local/datasets/district/fhirStores/main"}}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished",
                       "source": "//pubsub.googleapis.com/projects/local/topics/patient-changes"},
                      {"message": message, "subscription": "projects/local/subscriptions/match-patient"})


def patient_ids_in_order(directory: Path) -> list[str]:
    ids = []
    for phase in ("bulk", "stream"):
        path = directory / phase / "Patient.ndjson"
        if path.exists():
            ids.extend(json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip())
    return ids


def pairs_of(groups) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for group in groups for p in itertools.combinations(sorted(set(group)), 2)}


def merged_clusters(db, settings) -> list[list[str]]:
    """Union of every request (master + duplicates + pending members): the merge decisions taken."""
    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for collection in ("nik_index", "demographic_index"):
        for snapshot in db.collection(settings.collection(collection)).stream():
            doc = snapshot.to_dict()
            request = doc.get("request") or {}
            members = [request.get("master"), *request.get("duplicates", [])] if request else []
            pending = [pid for pid, m in (doc.get("members") or {}).items() if m.get("status") == "pending"]
            if pending and doc.get("master"):
                members += [doc["master"], *pending]
            members = [m for m in members if m]
            for other in members[1:]:
                parent[find(other)] = find(members[0])
    clusters = defaultdict(list)
    for pid in list(parent):
        clusters[find(pid)].append(pid)
    return [c for c in clusters.values() if len(c) > 1]


@app.command()
def main(
    patients: int = typer.Option(1000, "--patients"),
    seed: int = typer.Option(1, "--seed"),
    workers: int = typer.Option(4, "--workers", min=1, help="events handled at once"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="an existing generated dataset"),
):
    from tools.stack import LocalStack

    with LocalStack() as stack:
        os.environ.update(stack.env)
        project = f"eval-{uuid.uuid4().hex[:8]}"
        os.environ["DEDUP_PROJECT_ID"] = project
        from google.cloud import firestore, pubsub_v1

        from functions.matching import match_patient
        from shared.config import get_settings
        from shared.domain.patient import patient_facts
        from shared.fhir.client import FhirClient
        from tools.dataset.generate import Params, generate
        from tools.dataset.load import load_dataset

        get_settings.cache_clear()
        settings = get_settings()
        publisher = pubsub_v1.PublisherClient()
        for topic in (settings.topic_merge_requests, settings.topic_patient_changes):
            publisher.create_topic(name=publisher.topic_path(project, topic))

        directory = dataset or Path(tempfile.mkdtemp(prefix="dedup-eval-"))
        if dataset is None:
            generate(directory, Params(patients=patients, seed=seed, resources_per_patient=0.0), settings)
        truth = json.loads((directory / "ground_truth.json").read_text())
        with FhirClient.from_settings(settings) as fhir:
            report = load_dataset(directory, fhir, show_progress=False)
            if report.failed:
                raise typer.Exit(f"loading failed for {report.failed} resources")
            resources = {p["id"]: p for p in fhir.search("Patient", {"_count": "1000"})}

        ids = patient_ids_in_order(directory)
        durations: list[float] = []

        def deliver(patient_id: str) -> None:
            began = time.perf_counter()
            match_patient(notification(patient_id))
            durations.append(time.perf_counter() - began)

        console.print(f"delivering {len(ids)} Patient notifications, {workers} at a time ...")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(deliver, ids))
        elapsed = time.perf_counter() - started

        db = firestore.Client(project=project)
        predicted = pairs_of(merged_clusters(db, settings))
        person_of = {pid: info["person"] for pid, info in truth["patients"].items()}
        actual = pairs_of(truth["persons"].values())
        facts = {pid: patient_facts(r, settings) for pid, r in resources.items()}
        nik_duplicates = {(a, b) for a, b in actual
                          if facts[a].kind == "nik" and facts[b].kind == "nik" and facts[a].nik_token
                          and facts[a].nik_token == facts[b].nik_token}
        true_positive = predicted & actual
        false_merges = sorted(predicted - actual)
        reviews = Counter(s.to_dict()["reason"] for s in db.collection(settings.collection("review_items")).stream())
        unmatched = sum(1 for s in db.collection(settings.collection("patient_keys")).stream()
                        if s.to_dict().get("status") == "unmatched")

        table = Table(title=f"Matching on {len(ids)} patients of {len(truth['persons'])} persons "
                            f"(seed {truth['seed']}, {workers} workers)")
        table.add_column("measure")
        table.add_column("value", justify="right")
        precision = len(true_positive) / len(predicted) if predicted else 1.0
        table.add_row("merge pairs decided", str(len(predicted)))
        table.add_row("precision (pairs)", f"{precision:.4f}")
        table.add_row("recall, all same-person pairs", f"{len(true_positive)}/{len(actual)} = "
                      f"{len(true_positive) / max(1, len(actual)):.4f}")
        found_nik = nik_duplicates & predicted
        table.add_row("recall, NIK-bearing duplicates", f"{len(found_nik)}/{len(nik_duplicates)} = "
                      f"{len(found_nik) / max(1, len(nik_duplicates)):.4f}")
        table.add_row("false merges (pairs)", str(len(false_merges)))
        for reason, count in sorted(reviews.items()):
            table.add_row(f"review: {reason}", str(count))
        table.add_row("unmatched (no NIK, no birth date/gender)", str(unmatched))
        ordered = sorted(durations)
        table.add_row("handling p50 / p95 (ms)", f"{statistics.median(ordered) * 1000:.0f} / "
                      f"{ordered[int(0.95 * (len(ordered) - 1))] * 1000:.0f}")
        table.add_row("events/s", f"{len(ids) / elapsed:.1f}")
        console.print(table)
        missed = sorted(nik_duplicates - predicted)
        for a, b in false_merges[:20]:
            console.print(f"false merge: {a} ({truth['patients'][a]['case']}) + {b} ({truth['patients'][b]['case']})")
        for a, b in missed[:20]:
            console.print(f"missed NIK duplicate: {a} ({truth['patients'][a]['case']}) + {b} "
                          f"({truth['patients'][b]['case']}) same person={person_of[a] == person_of[b]}")
        publisher.stop()


if __name__ == "__main__":
    app()
