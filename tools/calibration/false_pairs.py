"""Every false pair of an offline run, with the rule and model evidence that merged it. No patient data.

    python -m tools.calibration.false_pairs --set redteam --seed 1 --patients 5000 [--json FILE]

Runs the set offline (``offline.write_set`` + ``run_offline``, the production decision code over the
in-memory fakes), then for each merged pair of two different persons prints: the patient ids, their case
labels and noise labels, ``collides_with`` when the record carries another person's NIK, each record's
group (NIK or demographic index), status and the reason stored with it, whether the two were merged
directly (both in one request) or through a third record, and the pure pair decision of the two records
(``compare_nik_pair`` when they share a NIK token, else ``compare_demographic_pair``): rule, name score,
agree/conflict/missing per field, shared corroborator kinds, NIK issues, the model's level and weight per
comparison. Never a name, NIK, phone or birth date.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import typer

from tools.calibration.matching_score import merged_clusters, pairs_of

app = typer.Typer(add_completion=False)


def explain_false_pairs(set_name: str, seed: int | None, patients: int, workdir: Path) -> list[dict]:
    from shared.config import Settings
    from shared.domain.pair_rules import compare_demographic_pair, compare_nik_pair
    from shared.domain.patient import member_record, patient_facts
    from tools.calibration.offline import run_offline, write_set

    settings = Settings(environment="local")
    directory = write_set(set_name, seed, patients, settings, workdir)
    truth = json.loads((directory / "ground_truth.json").read_text())
    run = run_offline(directory, settings)
    people = truth["patients"]
    predicted = pairs_of(merged_clusters(run.group_docs))
    false_pairs = sorted(p for p in predicted if people[p[0]]["person"] != people[p[1]]["person"])
    where: dict[str, tuple[str, dict]] = {}
    requests: list[set[str]] = []
    for doc in run.group_docs:
        for pid, member in (doc.get("members") or {}).items():
            if pid not in where or member.get("status") != "merged":
                where[pid] = ("nik" if doc.get("kind", "nik") == "nik" and "nik" in str(doc.get("key", "nik"))
                              else "demographic", member)
        request = doc.get("request") or {}
        if request:
            requests.append({request.get("master"), *request.get("duplicates", [])})
    out = []
    for a, b in false_pairs:
        facts = {pid: patient_facts(run.resources[pid], settings) for pid in (a, b)}
        records = {pid: member_record(facts[pid]) for pid in (a, b)}
        same_token = facts[a].nik_token and facts[a].nik_token == facts[b].nik_token
        compare = compare_nik_pair if same_token else compare_demographic_pair
        decision = compare(records[a], records[b], settings)
        out.append({
            "patients": [a, b],
            "cases": [people[a]["case"], people[b]["case"]],
            "noise": [people[a].get("noise") or [], people[b].get("noise") or []],
            "carries_nik_of_other": [people[a].get("collides_with") == people[b]["person"],
                                     people[b].get("collides_with") == people[a]["person"]],
            "same_nik_token": bool(same_token),
            "direct": any({a, b} <= r for r in requests),
            "statuses": [[where.get(pid, ("?", {}))[1].get("status"), where.get(pid, ("?", {}))[1].get("reason")]
                         for pid in (a, b)],
            "pair_decision": {"outcome": decision.outcome, "reason": decision.reason, **decision.evidence},
        })
    return out


@app.command()
def main(set_name: str = typer.Option("redteam", "--set"), seed: int = typer.Option(1, "--seed"),
         patients: int = typer.Option(5000, "--patients"), json_out: Path | None = typer.Option(None, "--json"),
         workdir: Path | None = typer.Option(None, "--workdir")):
    from shared.logging import set_level

    set_level(logging.WARNING)   # the services log a line per patient; the table is the output
    pairs = explain_false_pairs(set_name, seed, patients, workdir or Path(tempfile.mkdtemp(prefix="dedup-fp-")))
    for pair in pairs:
        print(json.dumps(pair, sort_keys=True))
    print(f"{len(pairs)} false pairs")
    if json_out:
        json_out.write_text("".join(json.dumps(p, sort_keys=True) + "\n" for p in pairs))


if __name__ == "__main__":
    app()
