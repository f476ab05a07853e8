"""Scores a matching run against a generated district's ground truth. Pure: no stack, no I/O.

Input: the ground truth (``ground_truth.json`` as a dict), the Patient resources, the group documents
of the index (``nik_index`` and ``demographic_index``, in their ``Group.to_doc()`` form, as Firestore or
``tests.fakes.InMemoryGroups`` holds them) and the review items (``ReviewItem.to_doc()`` form). Both
evaluation modes (the local stack, and the offline in-memory run) score through ``score_run``.

Over pairs of patient records:
- a pair is *merged* when one merge decision unites it (every request's master + duplicates, and the
  members pending on a running request, joined transitively);
- a same-person pair not merged is *review* when pending review items unite it (a careful reviewer
  approves the items naming one person twice and rejects the rest), else *missed*;
- *NIK-bearing* pairs: same person, both records with a NIK (kind ``nik``) of the same valid token.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from shared.config import Settings
from shared.domain.patient import candidate_blocks, patient_facts

MERGED, REVIEW, MISSED = "merged", "review", "missed"
# The three sets the before/after table reports: (noise model, mix of people); and the public
# FEBRL benchmarks given NIK-like identifiers (tools/dataset/febrl.py): fixed data, no seed, no size.
EVAL_SETS: dict[str, dict[str, str]] = {
    "default": {"noise": "field", "mix": "district"},
    "legacy": {"noise": "legacy", "mix": "district"},
    "lookalike": {"noise": "legacy", "mix": "lookalike"},
    "febrl1": {"febrl": "febrl1"},
    "febrl2": {"febrl": "febrl2"},
    "febrl3": {"febrl": "febrl3"},
    "febrl4": {"febrl": "febrl4"},
    # An independently written district of look-alike people and its own noise (tools/dataset/redteam.py).
    "redteam": {"generator": "redteam"},
}
# A false pair touching one of these is a baby or a twin merged wrongly: must never happen.
BABY_TWIN_CASES = frozenset({"newborn-nik-ibu", "newborn-own-nik", "twin", "twin-lookalike",
                             "rt-twin", "rt-child-mother-nik"})
TOP_PATTERNS = 8


class Clusters:
    """Union-find over patient ids."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, ids) -> None:
        ids = [i for i in ids if i]
        for other in ids[1:]:
            self.parent[self.find(other)] = self.find(ids[0])

    def together(self, a: str, b: str) -> bool:
        return self.find(a) == self.find(b)


def pairs_of(groups) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for group in groups for p in itertools.combinations(sorted(set(group)), 2)}


def merged_clusters(group_docs: Iterable[dict]) -> list[list[str]]:
    """Union of every request (master + duplicates + pending members): the merge decisions taken."""
    union = Clusters()
    for doc in group_docs:
        request = doc.get("request") or {}
        members = [request.get("master"), *request.get("duplicates", [])] if request else []
        pending = [pid for pid, m in (doc.get("members") or {}).items() if m.get("status") == "pending"]
        if pending and doc.get("master"):
            members += [doc["master"], *pending]
        union.join(members)
    clusters = defaultdict(list)
    for pid in list(union.parent):
        clusters[union.find(pid)].append(pid)
    return [sorted(c) for c in clusters.values() if len(c) > 1]


def classify_pairs(pairs, merged: set[tuple[str, str]], merge_groups, review_groups,
                   same_person: Callable[[str, str], bool]) -> dict[tuple[str, str], str]:
    """Each same-person pair: merged, review (see the module doc) or missed."""
    united = Clusters()
    for group in merge_groups:
        united.join(sorted(group))
    for group in review_groups:
        for x, y in itertools.combinations(sorted(set(group)), 2):
            if same_person(x, y):
                united.join([x, y])
    return {pair: MERGED if tuple(sorted(pair)) in merged else REVIEW if united.together(*pair) else MISSED
            for pair in pairs}


def nik_bearing_pairs(actual: set[tuple[str, str]], facts: dict) -> set[tuple[str, str]]:
    return {(a, b) for a, b in actual
            if facts[a].kind == "nik" and facts[b].kind == "nik" and facts[a].nik_token
            and facts[a].nik_token == facts[b].nik_token}


# Legacy-noise types left out of a pair's pattern: formatting every matcher undoes; they would split
# each pattern in four without saying why a pair was missed.
FORMATTING_NOISE = frozenset({"name-caps", "name-honorific"})


def pair_pattern(a: str, b: str, patients: dict) -> str:
    """The pair's case labels, and the legacy-noise error types on either record (when there are any,
    formatting left out)."""
    cases = "+".join(sorted((patients[a]["case"], patients[b]["case"])))
    noise = sorted({label.split(":")[0] for pid in (a, b) for label in patients[pid].get("noise") or ()}
                   - FORMATTING_NOISE)
    if "noise" not in patients[a] and "noise" not in patients[b]:
        return cases
    return f"{cases} | {','.join(noise) or 'no noise'}"


def block_recall(actual: set[tuple[str, str]], facts: dict, settings: Settings) -> float:
    """The share of same-person pairs whose records share at least one block (the NIK group or a candidate
    block, ``shared.domain.patient.candidate_blocks``; the member cap left out): a pair sharing none is
    never compared, so no rule or model can merge it or send it to review."""
    keys = {pid: set(candidate_blocks(f, settings)) | ({f"nik:{f.nik_token}"} if f.nik_token else set())
            for pid, f in facts.items()}
    found = sum(1 for a, b in actual if keys[a] & keys[b])
    return round(found / len(actual), 4) if actual else 1.0


def score_run(truth: dict, resources: dict[str, dict], group_docs: Iterable[dict], review_docs: Iterable[dict],
              settings: Settings) -> dict:
    """The evaluation's figures for one run (JSON-ready). ``resources``: patient id -> Patient."""
    patients = truth["patients"]
    person_of = {pid: info["person"] for pid, info in patients.items()}
    facts = {pid: patient_facts(resource, settings) for pid, resource in resources.items()}
    clusters = merged_clusters(group_docs)
    predicted = pairs_of(clusters)
    actual = pairs_of(truth["persons"].values())
    nik_pairs = nik_bearing_pairs(actual, facts)
    reviews = list(review_docs)
    pending = [item["patient_ids"] for item in reviews if item.get("status") == "pending"]
    outcome = classify_pairs(actual, predicted, clusters, pending, lambda x, y: person_of[x] == person_of[y])
    false_pairs = sorted(predicted - actual)
    merged = Counter(outcome[p] for p in actual)
    merged_nik = Counter(outcome[p] for p in nik_pairs)
    not_merged = [p for p in actual if outcome[p] != MERGED]

    def ratio(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 1.0

    return {
        "patients": len(patients),
        "persons": len(truth["persons"]),
        "true_pairs": len(actual),
        "nik_pairs": len(nik_pairs),
        "merged_pairs": len(predicted),
        "false_pairs": len(false_pairs),
        "precision": ratio(len(predicted & actual), len(predicted)),
        "recall_auto": ratio(merged[MERGED], len(actual)),
        "recall_auto_nik": ratio(merged_nik[MERGED], len(nik_pairs)),
        "recall_with_review": ratio(merged[MERGED] + merged[REVIEW], len(actual)),
        "block_recall": block_recall(actual, facts, settings),
        "recall_with_review_nik": ratio(merged_nik[MERGED] + merged_nik[REVIEW], len(nik_pairs)),
        "outcomes": {MERGED: merged[MERGED], REVIEW: merged[REVIEW], MISSED: merged[MISSED]},
        "review_items": len(pending),
        "review_pct": round(100 * len(pending) / max(1, len(patients)), 2),
        "review_reasons": dict(sorted(Counter(item["reason"] for item in reviews
                                              if item.get("status") == "pending").items())),
        "baby_twin_false_pairs": sum(1 for a, b in false_pairs
                                     if {patients[a]["case"], patients[b]["case"]} & BABY_TWIN_CASES),
        "false_pairs_by_pattern": _top(Counter(pair_pattern(a, b, patients) for a, b in false_pairs)),
        "review_by_pattern": _top(Counter(pair_pattern(a, b, patients) for a, b in not_merged
                                          if outcome[(a, b)] == REVIEW)),
        "missed_by_pattern": _top(Counter(pair_pattern(a, b, patients) for a, b in not_merged
                                          if outcome[(a, b)] == MISSED)),
        "not_merged_by_case": dict(Counter("+".join(sorted((patients[a]["case"], patients[b]["case"])))
                                           for a, b in not_merged).most_common()),
    }


def _top(counts: Counter) -> list[list]:
    return [[pattern, count] for pattern, count in counts.most_common(TOP_PATTERNS)]
