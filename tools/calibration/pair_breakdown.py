"""Why same-person pairs are not merged, and what the different-person pairs in review look like.

Runs one set and seed offline (``tools.calibration.offline``) and breaks down, by counts:
- the same-person pairs not merged automatically (in review or missed), by the rule the pure pair
  decision gives and by what the two records share;
- the different-person pairs that a pending review item unites, the same way (what a reviewer rejects).

What the records share is a short shape, no patient data: ``nik`` (same / one-digit / differ / one-side /
none), the model's name and birth-date levels, sex (agree / conflict / missing; ``nik`` when one side's is
only NIK-derived), ``phone`` and ``addr`` when a keyed token is shared, ``home`` when ``same_home``.

    DEDUP_ENVIRONMENT=local .venv/bin/python -m tools.calibration.pair_breakdown --set legacy --seed 1 \\
        --patients 5000 [--workdir DIR] [--top 25]
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections import Counter
from pathlib import Path

import typer

from shared.config import Settings
from shared.domain.pair_rules import compare_demographic_pair, compare_nik_pair
from shared.domain.patient import member_record, patient_facts
from shared.domain.places import same_home
from shared.linkage.model import default_model
from tools.calibration.matching_score import MERGED, REVIEW, classify_pairs, merged_clusters, pairs_of
from tools.calibration.offline import run_offline, write_set

app = typer.Typer(add_completion=False)


def _nik_shape(a: dict, b: dict, nik_level: str) -> str:
    own_a, own_b = a["kind"] == "nik", b["kind"] == "nik"
    if own_a and own_b:
        return {"exact": "same", "one-digit": "one-digit"}.get(nik_level, "differ")
    return "one-side" if own_a or own_b else "none"


def _sex(a: dict, b: dict) -> str:
    if not a.get("gender") or not b.get("gender"):
        return "missing"
    derived = "gender" in (a.get("derived") or ()) or "gender" in (b.get("derived") or ())
    state = "agree" if a["gender"] == b["gender"] else "conflict"
    return f"{state}-nik" if derived else state


def pair_shape(a: dict, b: dict) -> str:
    levels = default_model().score("a", a, "b", b).levels
    shared = {c.split(":", 1)[0] for c in set(a.get("corroborators") or ()) & set(b.get("corroborators") or ())}
    ties = [t for t in ("phone", "addr", "id") if t in shared] + (["home"] if same_home(a, b) else [])
    return (f"nik={_nik_shape(a, b, levels['nik'])} name={levels['name']} birth={levels['birth_date']} "
            f"sex={_sex(a, b)} ties={'+'.join(ties) or '-'}")


def pair_rule(a: dict, b: dict, settings: Settings) -> str:
    if a["kind"] == b["kind"] == "nik" and a.get("nik_token") == b.get("nik_token"):
        decision = compare_nik_pair(a, b, settings)
    else:
        decision = compare_demographic_pair(a, b, settings)
    return f"{decision.outcome}:{decision.reason}"


def breakdown(set_name: str, seed: int, patients: int, workdir: Path, settings: Settings) -> dict:
    directory = write_set(set_name, seed, patients, settings, workdir)
    truth = json.loads((directory / "ground_truth.json").read_text())
    run = run_offline(directory, settings)
    person_of = {pid: info["person"] for pid, info in truth["patients"].items()}
    records = {pid: member_record(patient_facts(r, settings)) for pid, r in run.resources.items()}
    clusters = merged_clusters(run.group_docs)
    actual = pairs_of(truth["persons"].values())
    pending = [item for item in run.review_docs if item.get("status") == "pending"]
    outcome = classify_pairs(actual, pairs_of(clusters), clusters, [i["patient_ids"] for i in pending],
                             lambda x, y: person_of[x] == person_of[y])
    result: dict[str, Counter] = {"review_rule": Counter(), "review_shape": Counter(),
                                  "missed_rule": Counter(), "missed_shape": Counter(),
                                  "false_review_rule": Counter(), "false_review_shape": Counter(),
                                  "item_reason_true": Counter(), "item_reason_false": Counter()}
    for (x, y), state in outcome.items():
        if state == MERGED:
            continue
        key = "review" if state == REVIEW else "missed"
        result[f"{key}_rule"][pair_rule(records[x], records[y], settings)] += 1
        result[f"{key}_shape"][pair_shape(records[x], records[y])] += 1
    seen: set[tuple[str, str]] = set()
    for item in pending:
        ids = sorted(set(item["patient_ids"]))
        same = any(person_of[x] == person_of[y] for x, y in itertools.combinations(ids, 2))
        result["item_reason_true" if same else "item_reason_false"][item["reason"]] += 1
        for x, y in itertools.combinations(ids, 2):
            if person_of[x] == person_of[y] or (x, y) in seen:
                continue
            seen.add((x, y))
            result["false_review_rule"][pair_rule(records[x], records[y], settings)] += 1
            result["false_review_shape"][pair_shape(records[x], records[y])] += 1
    return {"set": set_name, "seed": seed, "true_pairs": len(actual),
            "not_merged": sum(1 for s in outcome.values() if s != MERGED),
            **{k: dict(v.most_common()) for k, v in result.items()}}


@app.command()
def main(set_name: str = typer.Option("legacy", "--set"), seed: int = typer.Option(1, "--seed"),
         patients: int = typer.Option(5000, "--patients"), workdir: Path | None = typer.Option(None, "--workdir"),
         top: int = typer.Option(25, "--top"), json_out: Path | None = typer.Option(None, "--json")) -> None:
    import logging

    from shared.logging import set_level

    set_level(logging.WARNING)
    settings = Settings(environment="local")
    result = breakdown(set_name, seed, patients, workdir or Path(tempfile.mkdtemp(prefix="dedup-breakdown-")),
                       settings)
    print(f"{set_name} seed {seed}: {result['true_pairs']} true pairs, {result['not_merged']} not merged")
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"\n## {key} (total {sum(value.values())})")
            for label, count in list(value.items())[:top]:
                print(f"{count:6d}  {label}")
    if json_out:
        json_out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    app()
