"""A promoted model changes only the decisions taken after it, and every decision keeps the version that
made or proposed it (services over the fakes, the model read from a model store as the match function
reads it: ``CurrentModelCache`` over ``ModelRegistry``).

Two models that disagree on one pair, "Budi Santoso" / "Budi Santoso Hartono Wijaya" under one NIK (the
rules hesitate, the model decides): the shipped model merges it; a *sceptical* one (every level's weight
-10) leaves it to a person. A clerk's reject stays a reject when the eager model is promoted and the
record changes again; a merge the eager model made stays done when the sceptical one is promoted and both
records change again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.domain.pair_rules import MERGE, compare_nik_pair
from shared.domain.patient import member_record, patient_facts
from shared.domain.review import ReviewStatus
from shared.domain.survivorship import EVIDENCE_EXTENSION_URL
from shared.linkage.model import default_model_artefact, model_versions
from shared.messages import MergeRequested, PatientChange
from shared.services.models import CurrentModelCache, ModelRegistry
from tests.fakes import FakeServices, InMemoryModelStore, patient_resource
from tests.unit.merge_world import MergeWorld, provenances, run_merge

SETTINGS = Settings()
NIK = "3201011505900001"
ARTEFACT = json.loads(default_model_artefact())


def sceptical(artefact: dict) -> dict:
    return artefact | {"comparisons": [
        {**c, "levels": [{**level, "match_weight": 0.0 if level["m"] is None else -10.0} for level in c["levels"]]}
        for c in artefact["comparisons"]]}


class District:
    """A district whose match function reads its model from the store, the pointer on every event."""

    def __init__(self):
        self.store = InMemoryModelStore()
        moments = iter(datetime(2026, 11, 30, tzinfo=UTC) + timedelta(minutes=n) for n in range(1000))
        self.registry = ModelRegistry(self.store, clock=lambda: next(moments))
        self.eager = self.registry.add(ARTEFACT, created_by="ops@district").version
        self.sceptical = self.registry.add(sceptical(ARTEFACT), created_by="ops@district").version
        self.world = FakeServices(SETTINGS, model=CurrentModelCache(self.registry, refresh_seconds=0))

    def promote(self, version: str) -> None:
        self.registry.promote(version, promoted_by="lead@district")

    def arrive(self, name: str, **fields) -> dict:
        patient = self.world.fhir.create(patient_resource(SETTINGS, name, NIK, **fields))
        self.world.matching.handle_change(PatientChange(patient["id"], "upsert"))
        return patient

    def changes(self, patient_id: str, **fields) -> None:
        """The record changes in the FHIR store (a new version) and its event is matched."""
        patient = self.world.fhir.read("Patient", patient_id)
        self.world.fhir.update(patient | fields)
        self.world.matching.handle_change(PatientChange(patient_id, "upsert"))


@pytest.fixture
def district() -> District:
    return District()


def test_the_two_models_disagree_on_the_pair(district):
    a, b = (member_record(patient_facts(patient_resource(SETTINGS, name, NIK), SETTINGS))
            for name in ("Budi Santoso", "Budi Santoso Hartono Wijaya"))
    models = {v: district.registry.model(v) for v in (district.eager, district.sceptical)}
    assert compare_nik_pair(a, b, SETTINGS, model=models[district.eager]).outcome == MERGE
    assert compare_nik_pair(a, b, SETTINGS, model=models[district.sceptical]).outcome != MERGE


def test_a_clerks_reject_stays_when_a_model_that_would_merge_is_promoted(district):
    district.promote(district.sceptical)
    budi = district.arrive("Budi Santoso")
    wijaya = district.arrive("Budi Santoso Hartono Wijaya")
    [item] = district.world.review.pending()
    assert model_versions(item.evidence) == [district.sceptical]     # the item says which model proposed it
    district.world.review.reject(item.id, "clerk@district")
    [entry] = district.world.audit.for_item(item.id)
    assert entry.details["model_versions"] == [district.sceptical]    # and so does the clerk's decision

    district.promote(district.eager)
    district.changes(wijaya["id"], telecom=[{"system": "phone", "value": "081234567890"}])
    district.changes(budi["id"], telecom=[{"system": "phone", "value": "081234567890"}])

    assert district.world.merge_requests_published() == []
    assert district.world.review.get(item.id).status == ReviewStatus.REJECTED
    assert district.world.review.pending() == []
    group = district.world.groups.get(item.group)
    assert group.request is None and tuple(sorted((budi["id"], wijaya["id"]))) in {
        tuple(p.split("|")) for p in group.to_doc()["do_not_match"]}


def test_a_done_merge_stays_done_when_a_model_that_would_not_merge_is_promoted(district):
    district.promote(district.eager)
    budi = district.arrive("Budi Santoso", source="simrs")
    wijaya = district.arrive("Budi Santoso Hartono Wijaya", source="pcare")
    [published] = district.world.merge_requests_published()
    request = MergeRequested.from_dict(published)
    assert model_versions(request.evidence) == [district.eager]      # the request names the model that made it
    merge = MergeWorld(district.world, request.master, list(request.duplicates), "", request,
                       {}, {})
    job = run_merge(merge)
    assert job["status"] == "done" and model_versions(job["evidence"]) == [district.eager]
    [provenance] = provenances(merge, "merge")
    [evidence] = [e["valueString"] for e in provenance["extension"] if e["url"] == EVIDENCE_EXTENSION_URL]
    assert model_versions(json.loads(evidence)) == [district.eager]   # and so does the audit trail in FHIR
    duplicate = next(pid for pid in (budi["id"], wijaya["id"]) if pid != request.master)

    district.promote(district.sceptical)
    district.changes(request.master, telecom=[{"system": "phone", "value": "081234567890"}])
    district.changes(duplicate, telecom=[{"system": "phone", "value": "081298765432"}])

    assert len(district.world.merge_requests_published()) == 1       # nothing new, no unmerge
    group = district.world.groups.get(request.group)
    assert group.request.status == "done" and group.members[duplicate]["status"] == "merged"
    assert district.world.merge_deps.jobs.get(request.request_id)["status"] == "done"
    record = district.world.fhir.read("Patient", duplicate)
    assert record["active"] is False and {"other": {"reference": f"Patient/{request.master}"},
                                          "type": "replaced-by"} in record["link"]
    assert district.world.review.pending() == []

    # A record arriving now is decided by the model promoted last, and says so.
    district.arrive("Budi")
    [item] = district.world.review.pending()
    assert model_versions(item.evidence) == [district.sceptical]
