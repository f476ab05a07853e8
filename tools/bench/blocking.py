"""What the candidate blocks cost and what they find, without deciding anything:
``python -m tools.bench blocking --patients 10000,100000 --work-dir DIR``.

Per size, over the bench's district (``tools.bench.partition.district``: seed 7, patients only, generated
once in ``--work-dir``), every Patient's groups as the live path places it (its NIK group and
``labelled_blocks``), in the source's order, and a block's members as the live index lets them in (its
first ``block_member_cap`` records). Reported per block kind and in all:

- *pairs*: the pairs within blocks (a block of n members gives n(n-1)/2), and per patient: what deciding
  and scoring look at, so what must not grow with the store;
- *recall*: of the ground truth's true pairs (two records of one person), those that share at least one
  group both are members of (a NIK group, or a block within its cap): a pair sharing none can never be
  compared, whatever the rules. Per kind, the true pairs it finds, and those no other kind finds.
  ``recall_blocks`` counts blocks only (a pair under one NIK is its NIK group's; one under two different
  NIKs needs a block).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

from shared.adapters.ndjson_patients import NdjsonPatients
from shared.config import Settings
from shared.domain.patient import labelled_blocks, patient_facts
from tools.bench.partition import district

os.environ.setdefault("DEDUP_ENVIRONMENT", "local")  # the local stack's development key


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_size(patients: int, work: Path, console) -> dict:
    settings = Settings()
    cap = settings.block_member_cap
    directory = district(patients, work)
    truth = json.loads((directory / "ground_truth.json").read_text())
    person_of = {pid: person for person, ids in truth["persons"].items() if len(ids) > 1 for pid in ids}
    del truth
    began, cpu = time.monotonic(), _cpu()
    size: Counter = Counter()                  # group -> records placed in it (past the cap too)
    kind_of: dict[str, str] = {}
    joined: dict[str, list[str]] = {}          # patient of a true pair -> the groups it is a member of
    count = 0
    for page in NdjsonPatients(directory).pages():
        for patient in page:
            count += 1
            facts = patient_facts(patient, settings)
            groups = [("nik", f"nik:{facts.nik_token}")] if facts.nik_token else []
            groups += [(kind, sys.intern(block)) for kind, block in labelled_blocks(facts, settings)]
            member_of = []
            for group, kind in {group: kind for kind, group in reversed(groups)}.items():
                kind_of.setdefault(group, kind)
                size[group] += 1
                if kind == "nik" or size[group] <= cap:
                    member_of.append(group)
            if facts.patient_id in person_of:
                joined[facts.patient_id] = member_of
    by_kind: dict[str, Counter] = {}
    for group, n in size.items():
        stats = by_kind.setdefault(kind_of[group], Counter())
        members = n if kind_of[group] == "nik" else min(n, cap)
        stats["groups"] += 1
        stats["pairs"] += members * (members - 1) // 2
        stats["largest"] = max(stats["largest"], n)
        stats["past_cap"] += n - members
        stats["groups_past_cap"] += n > members
    people: dict[str, list[str]] = {}
    for pid, person in person_of.items():
        if pid in joined:
            people.setdefault(person, []).append(pid)
    found: Counter = Counter()
    true_pairs = 0
    for ids in people.values():
        for a, b in combinations(ids, 2):
            true_pairs += 1
            shared = set(joined[a]) & set(joined[b])
            kinds = {kind_of[g] for g in shared}
            found["any"] += bool(kinds)
            found["blocks"] += bool(kinds - {"nik"})
            for kind in kinds:
                found[kind] += 1
            if len(kinds) == 1:
                found["only:" + next(iter(kinds))] += 1
    block_pairs = sum(s["pairs"] for k, s in by_kind.items() if k != "nik")
    result = {
        "patients": count, "cap": cap, "seconds": round(time.monotonic() - began, 1),
        "cpu_seconds": round(_cpu() - cpu, 1),
        "block_pairs": block_pairs, "block_pairs_per_patient": round(block_pairs / max(count, 1), 2),
        "true_pairs": true_pairs,
        "recall": round(found["any"] / max(true_pairs, 1), 5),
        "recall_blocks": round(found["blocks"] / max(true_pairs, 1), 5),
        "missed_true_pairs": true_pairs - found["any"],
        "by_kind": {kind: {**stats, "pairs_per_patient": round(stats["pairs"] / max(count, 1), 2),
                           "true_pairs_found": found[kind], "found_by_it_alone": found["only:" + kind]}
                    for kind, stats in sorted(by_kind.items())},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average": round(os.getloadavg()[0], 1),
    }
    console.print(result)
    return result
