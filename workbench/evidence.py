"""Whatever evidence a review item carries, in a shape the page can draw: match weights (a waterfall)
when the matching model gives them, else today's scores and field agreements. The page never needs to
know which model produced the item."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

_WEIGHT_KEYS = ("match_weight", "weight", "log2_bayes_factor", "bayes_factor_log2")
_LABEL_KEYS = ("comparison", "name", "field", "label", "output_column_name")
_WEIGHT_MAPS = ("match_weights", "weights")


@dataclass
class EvidenceView:
    rule: str | None = None
    weights: list[tuple[str, float]] = field(default_factory=list)     # in order: waterfall steps
    scores: list[tuple[str, float]] = field(default_factory=list)      # other numbers (name_score, ...)
    fields: dict[str, str] = field(default_factory=dict)               # field -> agree / conflict / missing
    facts: list[tuple[str, str]] = field(default_factory=list)         # everything else, as text


def _weights_of(evidence: Mapping) -> list[tuple[str, float]]:
    for key in _WEIGHT_MAPS:
        value = evidence.get(key)
        if isinstance(value, Mapping) and value and all(isinstance(v, (int, float)) for v in value.values()):
            return [(str(k), float(v)) for k, v in value.items()]
    for value in evidence.values():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            steps = []
            for entry in value:
                weight = next((entry[k] for k in _WEIGHT_KEYS if isinstance(entry.get(k), (int, float))), None)
                if weight is None:
                    break
                label = next((str(entry[k]) for k in _LABEL_KEYS if entry.get(k) is not None), f"#{len(steps) + 1}")
                level = entry.get("level") or entry.get("comparison_level") or entry.get("label_for_charts")
                steps.append((f"{label}: {level}" if level and str(level) != label else label, float(weight)))
            else:
                return steps
    return []


def _model_evidence(view: EvidenceView, model: Mapping) -> None:
    """The trained model's evidence (``shared.linkage.model.Score.evidence``): its weight per comparison
    (the waterfall), the summed weights, and the model version that decided."""
    comparisons = model.get("comparisons")
    if isinstance(comparisons, Mapping):
        view.weights = [(f"{name}: {entry.get('level')}", float(entry["weight"])) for name, entry in comparisons.items()
                        if isinstance(entry, Mapping) and isinstance(entry.get("weight"), (int, float))]
    for key in ("evidence_weight", "identity_weight", "match_probability"):
        if isinstance(model.get(key), (int, float)):
            view.scores.append((key, float(model[key])))
    if model.get("model_version"):
        view.facts.append(("model_version", str(model["model_version"])))


def evidence_view(evidence: Mapping | None) -> EvidenceView:
    evidence = dict(evidence or {})
    # A confirmation's evidence holds its pairs; a cluster item may hold one evidence per comparison.
    view = EvidenceView(rule=evidence.get("rule") or evidence.get("reason"))
    view.weights = _weights_of(evidence)
    if isinstance(evidence.get("model"), Mapping):
        _model_evidence(view, evidence["model"])
    for key, value in sorted(evidence.items()):
        if key in ("rule", "reason", "model", *_WEIGHT_MAPS) or key == "nik_token":
            continue
        if key == "fields" and isinstance(value, Mapping):
            view.fields = {str(k): str(v) for k, v in value.items()}
        elif isinstance(value, bool):
            view.facts.append((key, "yes" if value else "no"))
        elif isinstance(value, (int, float)):
            view.scores.append((key, float(value)))
        elif isinstance(value, str):
            view.facts.append((key, value))
        elif isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            view.facts.append((key, ", ".join(str(v) for v in value) or "-"))
        elif view.weights and isinstance(value, list):
            continue  # the comparisons the waterfall already draws
        elif isinstance(value, (Mapping, list)):
            view.facts.append((key, _compact(value)))
    return view


def _compact(value) -> str:
    import json

    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:297] + "..."
