"""Review items close themselves on the real Firestore emulator: the matching and review use cases with the
real adapters (bootstrap's Firestore repositories, a FHIR server), no functions running. A rejection
closes an overlapping item in its own transaction (the transaction's query of the group's pending items);
a patient made inactive supersedes its items; a subset approval from the CLI; the closing reasons in
``dedup review list --status closed`` and ``review show``."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ops.cli import app
from shared.bootstrap import groups, matching_service, review_service
from shared.config import Settings
from shared.domain.review import ReviewItem, ReviewStatus
from shared.domain.review_closing import RESOLVED_BY_DECISION, SUPERSEDED
from shared.messages import PatientChange

NIK = "3201011505900001"
SYSTEM = "https://fhir.kemkes.go.id/id/nik"
runner = CliRunner()


def cli(settings: Settings, *args: str):
    return runner.invoke(app, ["--project", settings.project_id, "--fhir-url", settings.fhir_base_url, *args],
                         catch_exceptions=False)


def put_patient(fhir, pid: str, name: str, phone: str, **extra) -> None:
    fhir.update({"resourceType": "Patient", "id": pid, "active": True, "name": [{"text": name}],
                 "identifier": [{"system": SYSTEM, "value": NIK}], "birthDate": "1990-05-15", "gender": "male",
                 "telecom": [{"system": "phone", "value": phone}], **extra})


def seed_item(settings: Settings, group_id: str, patient_ids, reason: str) -> ReviewItem:
    item = ReviewItem.proposed(group_id, sorted(patient_ids), reason, {}, "2026-01-01T00:00:00+00:00")
    groups(settings).transact(group_id, lambda tx: tx.propose_reviews([item]))
    return item


def test_items_close_themselves_in_the_deciding_transaction_on_the_emulator(settings, fhir, topics):
    suffix = settings.project_id[-6:]
    a, b, c = f"rc-a-{suffix}", f"rc-b-{suffix}", f"rc-c-{suffix}"
    put_patient(fhir, a, "Hendra Gunawan", "081234567890")
    put_patient(fhir, b, "Hendra Kurniawan Saputra", "085611112222")
    put_patient(fhir, c, "Joko Susilo", "089900001111")
    matching, review = matching_service(settings), review_service(settings)
    for pid in (a, b, c):
        matching.handle_change(PatientChange(pid, "upsert"))
    group_id = next(g for g in groups(settings).all("nik_index") if a in g.members).id

    # b made inactive: an item about b and c no longer asks anything.
    about_b = seed_item(settings, group_id, [b, c], "name-mismatch")
    assert about_b.id in groups(settings).get(group_id).reviews
    fhir.update({**fhir.read("Patient", b), "active": False})
    matching.handle_change(PatientChange(b, "upsert"))
    assert review.get(about_b.id).decision.get("closed_reason") == SUPERSEDED

    # A rejection of the whole cluster closes a narrower item in its own transaction.
    wide = seed_item(settings, group_id, [a, b, c], "ambiguous-match")
    narrow = seed_item(settings, group_id, [a, c], "model-review")
    review.reject(wide.id, "reviewer@district")
    assert review.get(wide.id).status == ReviewStatus.REJECTED
    closed = review.get(narrow.id)
    assert closed.status == ReviewStatus.CLOSED and closed.decision["closed_reason"] == RESOLVED_BY_DECISION
    assert closed.decision["closed_by"] == f"review-item {wide.id}"
    assert groups(settings).get(group_id).reviews.keys().isdisjoint({wide.id, narrow.id, about_b.id})

    listed = cli(settings, "review", "list", "--status", "closed", "--json")
    assert listed.exit_code == 0, listed.output
    reasons = {i["id"]: i["closed_reason"] for i in json.loads(listed.output)}
    assert reasons[narrow.id] == RESOLVED_BY_DECISION and reasons[about_b.id] == SUPERSEDED
    shown = cli(settings, "review", "show", narrow.id)
    assert shown.exit_code == 0 and f"closed: {RESOLVED_BY_DECISION} by review-item {wide.id}" in shown.output
    assert cli(settings, "review", "approve", narrow.id, "--by", "late").exit_code == 1   # closed: not pending


def test_the_cli_approves_a_chosen_subset_of_a_cluster_item(settings, fhir, topics):
    suffix = settings.project_id[-6:]
    ids = [f"rs-{n}-{suffix}" for n in "abc"]
    for pid, (name, phone) in zip(ids, [("Rudi Hartono", "081200000001"), ("Rudi Hartono Wibowo", "081200000002"),
                                        ("Rudi Setiawan", "081200000003")]):
        put_patient(fhir, pid, name, phone)
        matching_service(settings).handle_change(PatientChange(pid, "upsert"))
    group_id = next(g for g in groups(settings).all("nik_index") if ids[0] in g.members).id
    cluster = seed_item(settings, group_id, ids, "ambiguous-match")
    bad = cli(settings, "review", "approve", cluster.id, "--by", "r", "--patient", ids[0])
    assert bad.exit_code == 1 and "at least two" in bad.output
    result = cli(settings, "review", "approve", cluster.id, "--by", "reviewer@district", "--json",
                 "--patient", ids[0], "--patient", ids[1])
    assert result.exit_code == 0, result.output
    decided = review_service(settings).get(cluster.id)
    assert decided.status == ReviewStatus.APPROVED and decided.decision["approved"] == sorted(ids[:2])
    request = groups(settings).get(group_id).request
    assert request is not None and request.participants >= set(ids[:2]) and ids[2] not in request.participants
