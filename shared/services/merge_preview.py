"""Preview: what a merge would rewrite, by resource type, without writing anything."""

from __future__ import annotations

from shared.concurrency import run_concurrently
from shared.fhir.compartment import reference_search_plan
from shared.services.merge_deps import MergeDeps
from shared.services.rewrite import find_referencing


def preview(master: str, duplicates: list[str], deps: MergeDeps) -> dict[str, int]:
    """{resource type: resources a merge would rewrite}, without writing anything."""
    plan, _ = reference_search_plan(deps.fhir.capability())
    exclude = {master, *duplicates}

    def count(item):
        resource_type, params = item
        _, referencing = find_referencing(deps.fhir, deps.settings, resource_type, params, duplicates,
                                          exclude if resource_type == "Patient" else set())
        return resource_type, len(referencing)

    counts = run_concurrently(count, sorted(plan.items()), deps.settings.fhir_concurrency)
    return {t: n for t, n in counts if n}
