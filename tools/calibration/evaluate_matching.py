"""Scores matching against generated districts' ground truth, offline or through the local stack.

    python -m tools.calibration.evaluate_matching --offline --sets default,legacy,lookalike --seeds 1,2,3 \\
        --patients 5000 [--json FILE]

Offline (``tools/calibration/offline.py``): for each set (``matching_score.EVAL_SETS``: the field noise,
the legacy noise, the look-alike mix with the legacy noise) and seed, generates the district, runs every
Patient through ``MatchingService.handle_change`` over the in-memory fakes (the production decision
code minus I/O), scores it (``matching_score.score_run``), prints one table row per set and seed and
the top patterns of false pairs, review and misses per set, and writes every figure as JSON.

    python -m tools.calibration.evaluate_matching --patients 1000 --seed 1 [--sets legacy] [--workers 4] \\
        [--dataset DIR] [--explain FILE]

The stack mode starts its own local stack (emulators + an empty FHIR server), generates the dataset (or uses DIR),
loads it, then delivers one Healthcare-API-style notification per Patient (NameOnly, as the
production store is configured) to the real ``match_patient`` entry point, ``--workers`` at a time.
Reports, over pairs of patient records:
- precision / recall of the merge decisions (every pair inside one merge request counts as merged),
- recall on NIK-bearing duplicates (same person, same NIK),
- every same-person pair as merged / flagged for review (a pending review item connects it, directly
  or through merges) / missed entirely, for all pairs and for NIK-bearing duplicates,
- review items by reason, unmatched records, p50/p95 handling time per event and events/s.

``--explain FILE`` writes one JSON line per NIK-bearing duplicate pair that was not merged: patient
ids, case labels, outcome (review/missed), each member's status and reason in the index, the review
reasons that connect the pair, and the pair decision of ``compare_nik_pair`` (rule, name score,
agree/conflict/missing per field, NIK issues). Never a name, NIK or birth date.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from shared.adapters.index_codec import decode
from tools.calibration.matching_score import (
    EVAL_SETS,
    MERGED,
    MISSED,
    REVIEW,
    classify_pairs,
    merged_clusters,
    nik_bearing_pairs,
    pairs_of,
    score_run,
)

app = typer.Typer(add_completion=False)
console = Console(width=170)   # the results table is wide; a pipe would get 80 columns


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


def index_documents(db, settings) -> list[dict]:
    """The group documents in their ``Group.to_doc()`` form (stored by ``index_codec``)."""
    return [decode(collection, snapshot.to_dict()) for collection in ("nik_index", "demographic_index")
            for snapshot in db.collection(settings.collection(collection)).stream()]


def parse_list(text: str, kind=str) -> list:
    return [kind(part.strip()) for part in text.split(",") if part.strip()]


ROW = (("precision", "precision", "{:.4f}"), ("false pairs", "false_pairs", "{}"),
       ("auto recall", "recall_auto", "{:.4f}"), ("auto recall NIK", "recall_auto_nik", "{:.4f}"),
       ("recall +review", "recall_with_review", "{:.4f}"), ("block recall", "block_recall", "{:.4f}"),
       ("review % pts", "review_pct", "{:.2f}"),
       ("baby/twin false", "baby_twin_false_pairs", "{}"), ("true pairs", "true_pairs", "{}"),
       ("NIK pairs", "nik_pairs", "{}"), ("matching s", "seconds_matching", "{:.1f}"))


def results_table(results: list[dict], title: str) -> Table:
    table = Table(title=title)
    table.add_column("set")
    table.add_column("seed", justify="right")
    for header, _, _ in ROW:
        table.add_column(header, justify="right")
    for result in results:
        table.add_row(result["set"], str(result["seed"]),
                      *(fmt.format(result[key]) if key in result else "" for _, key, fmt in ROW))
    return table


def pattern_lines(results: list[dict]) -> list[str]:
    """Per set, the patterns summed over its seeds, most frequent first."""
    lines = []
    for set_name in dict.fromkeys(r["set"] for r in results):
        for key, label in (("false_pairs_by_pattern", "false pairs"), ("missed_by_pattern", "missed"),
                           ("review_by_pattern", "in review")):
            total: Counter = Counter()
            for result in results:
                if result["set"] == set_name:
                    total.update(dict(result[key]))
            if total:
                lines.append(f"[bold]{set_name}[/bold], {label}: " +
                             "; ".join(f"{pattern} ({count})" for pattern, count in total.most_common(6)))
    return lines


def run_offline_evaluation(sets: list[str], seeds: list[int], patients: int, json_out: Path | None,
                           workdir: Path | None, backfill_knows: str = "bulk") -> list[dict]:
    import logging

    from shared.config import Settings
    from shared.logging import set_level
    from tools.calibration.offline import evaluate_offline, is_fixed_set

    set_level(logging.WARNING)    # the services log one JSON line per patient: they would flood the table
    # In memory with the development key: nothing leaves the process, so the local environment is right.
    settings = Settings(environment="local")
    directory = workdir or Path(tempfile.mkdtemp(prefix="dedup-eval-offline-"))
    results = []
    for set_name in sets:
        if is_fixed_set(set_name):
            console.print(f"{set_name}: fixed public benchmark data, run once; --seeds and --patients do not apply")
        for seed in [None] if is_fixed_set(set_name) else seeds:
            results.append(evaluate_offline(set_name, seed, patients, settings, directory, backfill_knows))
            console.print(f"{set_name} seed {results[-1]['seed']}: precision {results[-1]['precision']:.4f}, "
                          f"auto recall {results[-1]['recall_auto']:.4f} "
                          f"({results[-1]['seconds_matching']:.1f} s)")
    console.print(results_table(results, f"Matching, offline, {patients} patients per generated district"))
    for line in pattern_lines(results):
        console.print(line)
    if json_out:
        json_out.write_text(json.dumps({"patients": patients, "backfill_knows": backfill_knows,
                                        "sets": {s: EVAL_SETS[s] for s in sets},
                                        "results": results}, indent=1) + "\n")
        console.print(f"figures written to {json_out}")
    return results


@app.command()
def main(
    patients: int = typer.Option(1000, "--patients"),
    seed: int = typer.Option(1, "--seed", help="stack mode: the seed"),
    offline: bool = typer.Option(False, "--offline", help="run the decision code in memory, no stack"),
    sets: str = typer.Option("default", "--sets", help=f"comma-separated, of {', '.join(EVAL_SETS)} "
                                                        "(stack mode: one)"),
    seeds: str | None = typer.Option(None, "--seeds", help="offline: comma-separated seeds (default: --seed)"),
    json_out: Path | None = typer.Option(None, "--json", help="write every figure as JSON"),
    workdir: Path | None = typer.Option(None, "--workdir", help="offline: where the districts are generated"),
    backfill_knows: str = typer.Option("bulk", "--backfill-knows",
                                       help="offline: the records the backfill knows before deciding: bulk "
                                            "(the load's bulk phase, as in production), all, none"),
    workers: int = typer.Option(4, "--workers", min=1, help="events handled at once"),
    dataset: Path | None = typer.Option(None, "--dataset", help="an existing generated dataset"),
    explain: Path | None = typer.Option(None, "--explain",
                                           help="write the NIK-bearing pairs not merged, with rule and evidence "
                                                "(JSON lines, no patient data)"),
):
    set_names = parse_list(sets)
    unknown = [name for name in set_names if name not in EVAL_SETS]
    if unknown or not set_names:
        raise typer.BadParameter(f"unknown set(s) {unknown}; known: {', '.join(EVAL_SETS)}")
    if offline:
        from tools.calibration.offline import BACKFILL_KNOWS

        if backfill_knows not in BACKFILL_KNOWS:
            raise typer.BadParameter(f"--backfill-knows: one of {', '.join(BACKFILL_KNOWS)}")
        run_offline_evaluation(set_names, parse_list(seeds, int) if seeds else [seed], patients, json_out, workdir,
                               backfill_knows)
        return
    if len(set_names) != 1 or seeds:
        raise typer.BadParameter("the stack mode runs one set and one seed (--sets NAME --seed N)")
    run_on_stack(set_names[0], patients, seed, workers, dataset, explain, json_out)


def run_on_stack(set_name: str, patients: int, seed: int, workers: int, dataset: Path | None,
                 explain: Path | None, json_out: Path | None) -> None:
    from tools.runtime.stack import LocalStack

    with LocalStack() as stack:
        os.environ.update(stack.env)
        project = f"eval-{uuid.uuid4().hex[:8]}"
        os.environ["DEDUP_PROJECT_ID"] = project
        from google.cloud import firestore, pubsub_v1

        from functions.matching import match_patient
        from shared.config import get_settings
        from shared.domain.pair_rules import compare_nik_pair
        from shared.domain.patient import member_record, patient_facts
        from shared.fhir.client import FhirClient
        from tools.calibration.offline import write_set
        from tools.dataset.load import load_dataset

        get_settings.cache_clear()
        settings = get_settings()
        publisher = pubsub_v1.PublisherClient()
        for topic in (settings.topic_merge_requests, settings.topic_patient_changes):
            publisher.create_topic(name=publisher.topic_path(project, topic))

        directory = dataset or write_set(set_name, seed, patients, settings,
                                         Path(tempfile.mkdtemp(prefix="dedup-eval-")))
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
        person_of = {pid: info["person"] for pid, info in truth["patients"].items()}
        resources = {pid: r for pid, r in resources.items() if pid in person_of}
        documents = index_documents(db, settings)
        clusters = merged_clusters(documents)
        predicted = pairs_of(clusters)
        actual = pairs_of(truth["persons"].values())
        facts = {pid: patient_facts(r, settings) for pid, r in resources.items()}
        nik_duplicates = nik_bearing_pairs(actual, facts)
        true_positive = predicted & actual
        false_merges = sorted(predicted - actual)
        review_items = [decode("review_items", s.to_dict())
                        for s in db.collection(settings.collection("review_items")).stream()]
        figures = {"set": set_name, "seed": truth["seed"],
                   **score_run(truth, resources, documents, review_items, settings)}
        if json_out:
            json_out.write_text(json.dumps({"patients": len(ids), "sets": {set_name: EVAL_SETS[set_name]},
                                            "results": [figures]}, indent=1) + "\n")
        reviews = Counter(item["reason"] for item in review_items)
        pending = [item["patient_ids"] for item in review_items if item.get("status") == "pending"]
        outcome = classify_pairs(actual, predicted, clusters, pending, lambda x, y: person_of[x] == person_of[y])
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
        for label, pairs in (("all same-person pairs", actual), ("NIK-bearing duplicates", nik_duplicates)):
            counts = Counter(outcome[p] for p in pairs)
            table.add_row(f"{label}: merged / review / missed",
                          f"{counts[MERGED]} / {counts[REVIEW]} / {counts[MISSED]}")
        table.add_row("false merges (pairs)", str(len(false_merges)))
        for reason, count in sorted(reviews.items()):
            table.add_row(f"review: {reason}", str(count))
        table.add_row("unmatched (no NIK, no birth date/gender)", str(unmatched))
        ordered = sorted(durations)
        table.add_row("handling p50 / p95 (ms)", f"{statistics.median(ordered) * 1000:.0f} / "
                      f"{ordered[int(0.95 * (len(ordered) - 1))] * 1000:.0f}")
        table.add_row("events/s", f"{len(ids) / elapsed:.1f}")
        console.print(table)
        console.print(results_table([figures], "Summary (as the offline mode reports it)"))
        for line in pattern_lines([figures]):
            console.print(line)
        for a, b in false_merges[:20]:
            console.print(f"false merge: {a} ({truth['patients'][a]['case']}) + {b} ({truth['patients'][b]['case']})")

        not_merged = sorted(p for p in nik_duplicates if outcome[p] != MERGED)
        if not_merged:
            groups = {}
            for a, _ in not_merged:
                group = f"nik_index/{facts[a].nik_token}"
                if group not in groups:
                    snapshot = db.collection(settings.collection("nik_index")).document(facts[a].nik_token).get()
                    groups[group] = decode("nik_index", snapshot.to_dict()) or {}
            explanations = [explain_pair(a, b, outcome[(a, b)], truth, facts, groups, review_items,
                                         settings, compare_nik_pair, member_record) for a, b in not_merged]
            rules = Counter((e["outcome"], e["pair_decision"]["rule"]) for e in explanations)
            for (kind, rule), count in sorted(rules.items()):
                console.print(f"NIK-bearing duplicate pairs {kind}: pair rule {rule}: {count}")
            for e in explanations:
                if e["outcome"] == MISSED:
                    console.print(f"missed NIK duplicate: {e['patients'][0]} + {e['patients'][1]} "
                                  f"statuses {e['statuses']} pair {e['pair_decision']}")
            if explain:
                explain.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in explanations))
                console.print(f"explanations of {len(explanations)} pairs written to {explain}")
        publisher.stop()


def explain_pair(a: str, b: str, outcome: str, truth: dict, facts: dict, groups: dict, review_items: list,
                 settings, compare_nik_pair, member_record) -> dict:
    """Why a NIK-bearing duplicate pair was not merged: ids, labels, index statuses, review reasons
    and the pure pair decision (evidence holds scores and agree/conflict/missing, never values)."""
    group = groups.get(f"nik_index/{facts[a].nik_token}") or {}
    members = group.get("members") or {}
    decision = compare_nik_pair(member_record(facts[a]), member_record(facts[b]), settings)
    linking = sorted({item["reason"] for item in review_items
                      if {a, b} & set(item["patient_ids"])})
    return {
        "patients": [a, b],
        "cases": [truth["patients"][a]["case"], truth["patients"][b]["case"]],
        "outcome": outcome,
        "statuses": [[(members.get(pid) or {}).get("status"), (members.get(pid) or {}).get("reason")]
                     for pid in (a, b)],
        "group_master": group.get("master") or (group.get("request") or {}).get("master"),
        "review_reasons_touching": linking,
        "pair_decision": {"outcome": decision.outcome, **decision.evidence},
    }


if __name__ == "__main__":
    app()
