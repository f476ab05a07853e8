"""After (or before) a merge, over the fakes: unmerge puts back exactly what the merge wrote and keeps
the patients apart in the index; preview counts without writing; reconcile moves late references
under the finished merge's journal."""

from __future__ import annotations

from collections import Counter

from shared.domain.group import pair_key
from shared.fhir.references import references_any, rewrite_patient_references, without_meta
from shared.messages import MergeRequested, PatientChange, ReconcileRun
from shared.services.merge_preview import preview
from shared.services.reconcile import reconcile
from shared.services.unmerge import unmerge
from tests.unit.merge_world import (
    CODE,
    MergeWorld,
    assert_merged,
    assert_restored,
    provenances,
    ref,
    run_merge,
    seeded_world,
)


def patient_events(world: MergeWorld) -> None:
    """What the store's notifications bring to matching after the patients were written."""
    for pid in world.patients_before:
        world.services.matching.handle_change(PatientChange(pid, "upsert"))


def test_unmerge_restores_every_resource_exactly_and_matching_does_not_merge_them_again():
    world = seeded_world()
    job = run_merge(world)
    patient_events(world)                                       # the finaliser's own writes
    assert world.take(MergeRequested) == []

    report = unmerge(job["job_id"], world.deps)

    assert report.conflicts == [] and report.restored == len(world.referencing()) and report.patients == 3
    assert_restored(world)
    assert world.deps.jobs.get(job["job_id"])["status"] == "unmerged"
    [provenance] = provenances(world, "unmerge")
    assert report.provenance_id == provenance["id"]
    group = world.services.groups.get(world.request.group)
    assert {pair_key(world.master, d) for d in world.duplicates} <= group.do_not_match
    assert all(group.members[pid]["status"] == "active" for pid in [world.master, *world.duplicates])
    # The restored patients' change events reach matching: same NIK, same name, never merged again.
    patient_events(world)
    assert world.take(MergeRequested) == []
    assert world.services.groups.get(world.request.group).request.status == "done"
    # An unmerge run again finds the job unmerged and changes nothing.
    versions = {r["id"]: r["meta"]["versionId"] for r in world.fhir.resources()}
    assert unmerge(job["job_id"], world.deps).provenance_id == provenance["id"]
    assert {r["id"]: r["meta"]["versionId"] for r in world.fhir.resources()} == versions


def test_unmerge_reports_a_resource_changed_since_the_merge_instead_of_overwriting_it():
    world = seeded_world()
    job = run_merge(world)
    changed = next(key for key in world.referencing() if key[0] == "Condition")
    edited = {**world.fhir.read(*changed), "note": [{"text": "edited after the merge"}]}
    world.fhir.update(edited)

    report = unmerge(job["job_id"], world.deps)

    assert report.conflicts == [{"resource_type": "Condition", "id": changed[1], "reason": "changed-since-merge"}]
    assert report.restored == len(world.referencing()) - 1
    now = world.fhir.read(*changed)
    assert without_meta(now) == without_meta(edited) and now["subject"] == ref(world.master)
    assert_restored(world, except_keys={changed})
    assert world.deps.jobs.get(job["job_id"])["unmerge_conflicts"] == report.conflicts


def test_unmerge_reports_a_resource_whose_rewrite_landed_unseen_and_was_then_edited():
    """The worker's batch write landed but its answer was lost, a clinician edited the resource, and
    the worker's retry found no duplicate left to rewrite ("not-needed"): the merge did change that
    resource, so the unmerge must report it, not pass over it (the chaos run caught this)."""
    world = seeded_world()
    changed = next(key for key in world.referencing() if key[0] == "Encounter")

    def landed_then_edited(entries):
        current = world.fhir.read(*changed)
        rewritten, _ = rewrite_patient_references(current, {d: world.master for d in world.duplicates})
        world.fhir.update({**rewritten, "note": [{"text": "edited after the rewrite"}]})

    world.fhir.before_next("batch", landed_then_edited,
                           when=lambda entries: entries[0]["request"]["url"].startswith("Encounter/"))
    job = run_merge(world)
    assert_merged_except = world.fhir.read(*changed)
    assert not references_any(assert_merged_except, world.duplicates)
    [entry] = [e for e in world.deps.jobs.journal_entries(job["job_id"], kind="reference") if e["id"] == changed[1]]
    assert entry["status"] == "not-needed"

    report = unmerge(job["job_id"], world.deps)

    assert {"resource_type": "Encounter", "id": changed[1], "reason": "changed-since-merge"} in report.conflicts
    assert world.fhir.read(*changed)["subject"] == ref(world.master)     # reported, not clobbered
    assert_restored(world, except_keys={changed})


def test_preview_counts_per_type_and_writes_nothing():
    world = seeded_world()
    fhir, jobs, publisher = world.fhir, world.services.jobs, world.services.publisher
    versions = {r["id"]: r["meta"]["versionId"] for r in fhir.resources()}
    sent, requests = len(publisher.sent), Counter(fhir.requests)

    counts = preview(world.master, world.duplicates, world.deps)

    assert counts == dict(Counter(t for t, _ in world.referencing()))
    assert counts["Observation"] == 3 and counts["Condition"] == 1
    assert not {"create", "update", "batch"} & set(fhir.requests - requests)
    assert {r["id"]: r["meta"]["versionId"] for r in fhir.resources()} == versions
    assert jobs.docs == {} and jobs.journal == {} and len(publisher.sent) == sent
    run_merge(world)
    assert preview(world.master, world.duplicates, world.deps) == {}


def test_reconcile_rewrites_late_references_under_the_finished_merges_journal():
    world = seeded_world()
    job = run_merge(world)
    d1, d2 = world.duplicates
    # A legacy system still sends data under its own (now inactive) patient id, after the merge.
    late = world.fhir.create({"resourceType": "Observation", "status": "final", "code": CODE, "subject": ref(d1)})
    # A reference no search parameter reaches: only the full scan finds it.
    hidden = world.fhir.create({"resourceType": "Basic", "code": CODE, "extension": [
        {"url": "urn:test:about", "valueReference": ref(d2)}]})

    daily = reconcile(world.deps, full=ReconcileRun.from_json(b'{"full": false}').full)

    assert (daily.merges, daily.duplicates, dict(daily.rewritten), daily.failures) == (1, 2, {"Observation": 1}, [])
    assert world.fhir.read("Observation", late["id"])["subject"] == ref(world.master)
    assert references_any(world.fhir.read("Basic", hidden["id"]), [d2])

    weekly = reconcile(world.deps, full=ReconcileRun.from_json(b'{"full": true}').full)

    assert dict(weekly.rewritten) == {"Basic": 1} and weekly.failures == []
    assert world.fhir.read("Basic", hidden["id"])["extension"][0]["valueReference"] == ref(world.master)
    assert_merged(world)
    journal = {(e["resource_type"], e["id"]): e for e in world.deps.jobs.journal_entries(job["job_id"], "reference")}
    assert journal[("Observation", late["id"])]["status"] == "done"
    assert journal[("Basic", hidden["id"])]["status"] == "done"
    # so an unmerge of the job takes them back to the duplicates as well
    unmerge(job["job_id"], world.deps)
    assert without_meta(world.fhir.read("Observation", late["id"])) == without_meta(late)
    assert without_meta(world.fhir.read("Basic", hidden["id"])) == without_meta(hidden)
