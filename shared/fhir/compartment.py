"""Which resource types can reference a Patient, and which search parameters find them.

The list is derived from the FHIR R4 (4.0.1) Patient CompartmentDefinition, not hand-picked: the
trimmed copy in ``data/patient_compartment_r4.json`` keeps each resource type with its compartment
search parameters (``trim_compartment_definition`` below made it; run this module on the published
``compartmentdefinition-patient.json`` to regenerate it). At run time the plan is narrowed to what the
server's CapabilityStatement lists, because a server may silently ignore an unknown parameter and
answer with every resource of the type.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "patient_compartment_r4.json"

# Audit records say what happened to whom; rewriting them would falsify history (our own merge
# Provenance names the duplicates on purpose). They stay out of the rewrite and of the final check.
AUDIT_TYPES = frozenset({"Provenance", "AuditEvent"})


def trim_compartment_definition(definition: dict) -> dict[str, list[str]]:
    """CompartmentDefinition JSON -> {resource type: [search params]} for types that can be in it."""
    if definition.get("resourceType") != "CompartmentDefinition" or definition.get("code") != "Patient":
        raise ValueError("not a Patient CompartmentDefinition")
    return {entry["code"]: list(entry["param"]) for entry in definition.get("resource", []) if entry.get("param")}


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, tuple[str, ...]]:
    data = json.loads(DATA_FILE.read_text())
    return {rtype: tuple(params) for rtype, params in data["resources"].items()}


def supported_reference_params(capability: dict) -> dict[str, set[str]]:
    """{type: {reference search params}} that the server's CapabilityStatement declares."""
    supported: dict[str, set[str]] = {}
    for rest in capability.get("rest", []):
        if rest.get("mode", "server") != "server":
            continue
        for resource in rest.get("resource", []):
            interactions = {i.get("code") for i in resource.get("interaction", [])}
            if not {"search-type", "update"} <= interactions:
                continue
            supported[resource["type"]] = {
                p["name"] for p in resource.get("searchParam", []) if p.get("type") == "reference"
            }
    return supported


def reference_search_plan(
    capability: dict, compartment: dict[str, tuple[str, ...]] | None = None
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(plan, skipped): plan = {type: [params to search]}, skipped = {type or type.param: why}.

    When the compartment's ``patient`` parameter is missing but ``subject`` is there, ``subject`` is
    used: in the R4 search parameter definitions ``patient`` is ``subject`` restricted to Patient
    targets, so searching ``subject=Patient/x`` finds the same resources.
    """
    compartment = compartment if compartment is not None else patient_compartment()
    supported = supported_reference_params(capability)
    plan: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for rtype, params in sorted(compartment.items()):
        if rtype in AUDIT_TYPES:
            skipped[rtype] = "audit-record"
            continue
        if rtype not in supported:
            skipped[rtype] = "type-not-supported"
            continue
        chosen: list[str] = []
        for param in params:
            if param in supported[rtype]:
                use = param
            elif param == "patient" and "subject" in supported[rtype]:
                use = "subject"
            else:
                skipped[f"{rtype}.{param}"] = "param-not-supported"
                continue
            if use not in chosen:
                chosen.append(use)
        if chosen:
            plan[rtype] = chosen
        else:
            skipped[rtype] = "no-supported-param"
    return plan, skipped


def _regenerate(source: str) -> None:
    definition = json.loads(Path(source).read_text())
    resources = trim_compartment_definition(definition)
    data = json.loads(DATA_FILE.read_text())
    data.update(url=definition.get("url"), version=definition.get("version"), resources=resources)
    DATA_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(resources)} resource types written to {DATA_FILE}")


if __name__ == "__main__":
    _regenerate(sys.argv[1])
