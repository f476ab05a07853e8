"""A trained matching model (a versioned JSON artefact) and its exact pure-Python evaluation.

The artefact is produced by ``tools/linkage/train.py`` from a Splink model trained on the district's own
records (m/u by EM, u by random sampling): per comparison of ``shared.linkage.comparisons`` the match
weight of each level (log2 m/u, as Splink computes it), the prior, and the name-frequency table of the
term-frequency adjusted level. The match weight of a pair is

    prior + sum over comparisons of the weight of the level it reaches
          + tf_weight * (log2 u_exact - log2 max(tf(name), tf_minimum)) on an exact name found in the table

which is what Splink's ``predict`` computes with the same table registered; the match probability is
2^w / (1 + 2^w). Neither Splink nor DuckDB is needed here (the deployed functions load this).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources

from shared.linkage.comparisons import COMPARISONS, HOUSEHOLD_COMPARISONS, Comparison, linkage_row
from shared.linkage.scores import PairScores, unpack_levels

FORMAT = "dedup-linkage-model/1"
DEFAULT_MODEL_RESOURCE = "default_model.json"


@dataclass(frozen=True)
class Score:
    match_weight: float
    match_probability: float
    levels: dict[str, str]            # comparison -> level label reached
    weights: dict[str, float]         # comparison -> its match weight (tf included): the waterfall
    prior: float
    model_version: str

    @property
    def evidence_weight(self) -> float:
        """The comparisons' weights without the prior. Decisions use this: the prior is the chance that two
        *random* records match, which shrinks with the district's size, while a candidate pair was already
        found by a block; a threshold on the evidence means the same in every district."""
        return self.match_weight - self.prior

    @property
    def identity_weight(self) -> float:
        """The evidence without household evidence (a shared phone): what an automatic merge needs."""
        return self.evidence_weight - sum(self.weights.get(name, 0.0) for name in HOUSEHOLD_COMPARISONS)

    def band(self, merge_weight: float, review_weight: float) -> str:
        """The model's own decision band before the rules above it: merge on identity evidence at or above
        ``merge_weight``, review on the evidence from ``review_weight``, else no-match (``Settings``'
        ``model_merge_weight`` / ``model_review_weight``; ``shared.domain.pair_rules`` decides with it)."""
        if self.identity_weight >= merge_weight:
            return "merge"
        return "review" if self.evidence_weight >= review_weight else "no-match"

    def evidence(self) -> dict:
        return {"model_version": self.model_version, "match_weight": round(self.match_weight, 3),
                "match_probability": round(self.match_probability, 6),
                "evidence_weight": round(self.evidence_weight, 3),
                "identity_weight": round(self.identity_weight, 3),
                "prior": round(self.prior, 3),
                "comparisons": {name: {"level": self.levels[name], "weight": round(self.weights[name], 3)}
                                for name in self.levels}}


def probability(weight: float) -> float:
    return 1.0 / (1.0 + 2.0 ** -weight)


@dataclass(frozen=True)
class MatchModel:
    version: str
    prior_weight: float
    weights: dict[str, list[float]]               # comparison -> weight of each level (0 for null)
    labels: dict[str, list[str]]
    tf: dict[str, dict[str, float]] = field(default_factory=dict)   # column -> value -> frequency
    tf_levels: dict[str, dict] = field(default_factory=dict)        # comparison -> {level, column, u, weight, min}
    trained_on: dict = field(default_factory=dict)
    artefact: dict = field(default_factory=dict, repr=False, compare=False)   # the JSON as loaded (Splink's m/u)
    comparisons: tuple[Comparison, ...] = COMPARISONS
    scores: PairScores | None = None   # asked first: pairs scored in bulk by Splink (the batch backfill)

    def with_scores(self, scores: PairScores | None) -> MatchModel:
        return replace(self, scores=scores)

    # The batch's deciding workers get the model by pickling; the comparisons' predicates are code, not
    # data: a model with the product's own comparisons travels without them and takes them back on arrival.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state["comparisons"] is COMPARISONS:
            state["comparisons"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, comparisons=state["comparisons"] or COMPARISONS)

    # --- artefact ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str | bytes) -> MatchModel:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} artefact")
        by_name = {c.name: c for c in COMPARISONS}
        for entry in doc["comparisons"]:
            expected = [level.label for level in by_name[entry["name"]].levels]
            if [level["label"] for level in entry["levels"]] != expected:
                raise ValueError(f"model {doc['version']}: comparison {entry['name']} has other levels than the code")
        return cls(
            version=doc["version"], prior_weight=doc["prior_weight"],
            weights={c["name"]: [level["match_weight"] for level in c["levels"]] for c in doc["comparisons"]},
            labels={c["name"]: [level["label"] for level in c["levels"]] for c in doc["comparisons"]},
            tf=doc.get("term_frequencies", {}), tf_levels=doc.get("tf_levels", {}),
            trained_on=doc.get("trained_on", {}), artefact=doc)

    # --- scoring -----------------------------------------------------------------------------
    def score_rows(self, left: Mapping, right: Mapping) -> Score:
        if self.scores is not None and (found := self.scores.get(left, right)) is not None:
            return self._looked_up(found[0], left, right)
        return self.score_levels({c.name: c.level_of(left, right) for c in self.comparisons}, left, right)

    def score_levels(self, indices: Mapping[str, int], left: Mapping, right: Mapping) -> Score:
        """A pair whose level per comparison is known (``indices``: comparison -> level index); ``left`` /
        ``right`` need only the term-frequency column (the name)."""
        total, levels, weights = self.prior_weight, {}, {}
        for comparison in self.comparisons:
            index = indices[comparison.name]
            weight = self.weights[comparison.name][index]
            tf_level = self.tf_levels.get(comparison.name)
            if tf_level and tf_level["level"] == index:
                weight += self._tf_adjustment(tf_level, left, right)
            levels[comparison.name] = self.labels[comparison.name][index]
            weights[comparison.name] = weight
            total += weight
        return Score(total, probability(total), levels, weights, self.prior_weight, self.version)

    def _looked_up(self, packed: int, left: Mapping, right: Mapping) -> Score:
        """A pair the engine scored: the levels it reached (Splink's gammas), weighed here as the evaluator
        weighs them, so a looked-up score is the evaluator's to the last bit (Splink's own weight agrees
        within 1e-9, ``tests/unit/test_batch_scores.py``; a decision at a threshold must not depend on
        which of the two summed)."""
        return self.score_levels({c.name: index for c, index in zip(self.comparisons, unpack_levels(packed),
                                                                     strict=True)}, left, right)

    def _tf_adjustment(self, tf_level: Mapping, left: Mapping, right: Mapping) -> float:
        table = self.tf.get(tf_level["column"], {})
        found = [table[v] for v in (left[tf_level["column"]], right[tf_level["column"]]) if v in table]
        if not found:
            return 0.0
        return tf_level["weight"] * (math.log2(tf_level["u"]) - math.log2(max(*found, tf_level["min"])))

    def score(self, a_id: str, a: Mapping, b_id: str, b: Mapping) -> Score:
        """Two index records (``member_record``)."""
        return self.score_rows(linkage_row(a_id, a), linkage_row(b_id, b))


def default_model_artefact() -> bytes:
    """The shipped model's JSON, as stored (its size is what a start logs)."""
    return resources.files("shared.linkage").joinpath(DEFAULT_MODEL_RESOURCE).read_bytes()


@cache
def default_model() -> MatchModel:
    """The model shipped in the package (trained on a generated district): used until a district has its own."""
    return MatchModel.from_json(default_model_artefact())


def model_versions(evidence: object) -> list[str]:
    """Every model version named anywhere in a decision's evidence (a request's ``first`` / ``joined`` /
    ``pairs``, a bridge's ``via``): which models made or proposed it."""
    found: set[str] = set()
    stack = [evidence]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            if isinstance(value.get("model_version"), str):
                found.add(value["model_version"])
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return sorted(found)
