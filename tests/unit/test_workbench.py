"""The workbench over the fakes (Flask's test client): access, CSRF, headers, decisions through
ReviewService (undo of an approval before its merge starts, the reviewer's master, a veto said on the
page), the language catalogue, the dashboard file."""

from __future__ import annotations

import re

import pytest

from shared.config import Settings
from shared.domain.review import ReviewItem, ReviewStatus
from shared.messages import PatientChange
from shared.services.report import ReportSources
from tests.fakes import FakeServices, patient_resource
from workbench.app import CONTENT_SECURITY_POLICY, WorkbenchServices, create_app, render_dashboard_file
from workbench.config import WorkbenchConfig
from workbench.evidence import evidence_view
from workbench.i18n import MESSAGES

SETTINGS = Settings()
NIK = "3201011505900001"
USERS = {"clerk@x": "reviewer", "boss@x": "supervisor", "guest@x": "viewer"}


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def matched(world, name, nik=NIK, **fields):
    patient = world.fhir.create(patient_resource(SETTINGS, name, nik, **fields))
    world.matching.handle_change(PatientChange(patient["id"], "upsert"))
    return patient


def app_for(world, mode="local"):
    services = WorkbenchServices(review=world.review, report_sources=world.report_sources, jobs=world.jobs,
                                 audit=world.audit, unmerge=None)
    return create_app(SETTINGS, services, WorkbenchConfig(mode=mode, roles=USERS, secret_key="k",
                                                          iap_audience="/projects/1/locations/r/services/s"))


def signed_in(world, monkeypatch, email="clerk@x"):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    client = app_for(world).test_client()
    client.post("/signin", data={"email": email, "csrf_token": token(client.get("/signin").text)})
    return client


def token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_production_refuses_anonymous_and_unverified_requests(world):
    client = app_for(world, "production").test_client()
    assert client.get("/queue").status_code == 401
    assert client.get("/queue", headers={"x-goog-iap-jwt-assertion": "forged"}).status_code == 401
    assert client.post("/items/rv-1/decide", data={"action": "approve"}).status_code == 401
    assert client.get("/signin").status_code == 401


def test_the_development_sign_in_exists_only_on_the_emulators(world, monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    assert app_for(world).test_client().get("/signin").status_code == 401


def test_pages_are_not_cached_and_carry_a_strict_policy(world, monkeypatch):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    client = signed_in(world, monkeypatch)
    [item] = world.review.pending()
    response = client.get(f"/items/{item.id}")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "<script>" not in response.text and " style=" not in response.text
    assert NIK not in response.text   # masked until revealed


def test_a_post_without_csrf_token_is_refused(world, monkeypatch):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    client = signed_in(world, monkeypatch)
    [item] = world.review.pending()
    assert client.post(f"/items/{item.id}/decide", data={"action": "reject"}).status_code == 400
    assert world.review.get(item.id).status == ReviewStatus.PENDING


def test_a_viewer_cannot_decide_or_reveal(world, monkeypatch):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    client = signed_in(world, monkeypatch, "guest@x")
    [item] = world.review.pending()
    page = client.get(f"/items/{item.id}").text
    for path in (f"/items/{item.id}/decide", f"/items/{item.id}/reveal", "/undo"):
        assert client.post(path, data={"action": "approve", "patient_id": item.patient_ids[0],
                                       "csrf_token": token(page)}).status_code == 403
    assert world.audit.entries == []


def test_undo_withdraws_an_approval_whose_merge_has_not_started(world):
    _, b = matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    [item] = world.review.pending()
    world.review.approve(item.id, "clerk@x", note="sama", master=b["id"])
    [message] = world.merge_requests_published()
    assert message["master"] == b["id"]   # the reviewer's choice
    group = world.groups.get(item.group)
    assert (group.request.evidence["first"] or {}).get("master_chosen_by") == "clerk@x"
    assert group.request.fixed_master   # the fan-out's claim keeps it
    world.review.undo_last("clerk@x")
    assert world.review.get(item.id).status == ReviewStatus.PENDING
    group = world.groups.get(item.group)
    assert group.request is None and not group.confirmed
    assert world.requests.claim_request(item.group, message["request_id"]) is None   # fan-out finds nothing
    assert [e.action for e in world.audit.for_item(item.id)] == ["approve", "undo"]


def test_undo_is_refused_once_the_merge_started(world):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    [item] = world.review.pending()
    world.review.approve(item.id, "clerk@x")
    [message] = world.merge_requests_published()
    assert world.requests.claim_request(item.group, message["request_id"]) is not None
    from shared.services.review import UndoRefused

    with pytest.raises(UndoRefused):
        world.review.undo_last("clerk@x")
    assert world.review.get(item.id).status == ReviewStatus.APPROVED


def test_a_twin_veto_is_said_on_the_page(world, monkeypatch):
    mother = "3201014103880003"
    one = matched(world, "By. Ny. Sari 1", None, nik_ibu=mother, birth="2024-01-01", multipleBirthInteger=1)
    two = matched(world, "By. Ny. Sari 2", None, nik_ibu=mother, birth="2024-01-01", multipleBirthInteger=2)
    group = next(g for g in world.groups.docs if one["id"] in world.groups.docs[g]["members"])
    item = ReviewItem.proposed(group, [one["id"], two["id"]], "possible-baby-duplicate", {}, "2025-01-01T00:00:00")
    world.reviews._create_absent([item])
    client = signed_in(world, monkeypatch)
    page = client.get(f"/items/{item.id}").text
    response = client.post(f"/items/{item.id}/decide", data={"action": "approve", "csrf_token": token(page)},
                           follow_redirects=True)
    assert "kembar (tidak pernah digabung)" in response.text   # the veto, in Bahasa Indonesia
    assert world.merge_requests_published() == []              # the twins are not merged
    assert set(world.review.get(item.id).decision["refused"].values()) == {"twins"}


def test_queue_pages_oldest_first_with_filters_and_counts(world):
    for n in range(7):
        doc = ReviewItem(f"rv-{n}", "name-mismatch" if n % 2 else "nik-conflict", "nik_index/t", [f"p{n}", "q"],
                         created_at=f"2025-01-0{n + 1}T00:00:00+00:00", sources=["simrs" if n < 3 else "pcare"])
        world.reviews.docs[doc.id] = doc.to_doc()
    from shared.domain.review import QueueFilter

    first = world.review.queue(QueueFilter(), size=3)
    assert [i.id for i in first.items] == ["rv-0", "rv-1", "rv-2"] and first.next_cursor == "rv-2"
    second = world.review.queue(QueueFilter(), after=first.next_cursor, size=3)
    assert [i.id for i in second.items] == ["rv-3", "rv-4", "rv-5"]
    assert [i.id for i in world.review.queue(QueueFilter(reason="name-mismatch", source="pcare")).items] == \
        ["rv-3", "rv-5"]
    assert world.review.pending(limit=2)[0].id == "rv-0"   # the oldest, whatever the ids
    counts = world.review.queue_counts(["name-mismatch", "nik-conflict"], ["simrs", "pcare"])
    assert counts.total == 7 and counts.by_reason == {"name-mismatch": 3, "nik-conflict": 4}
    assert counts.by_source == {"simrs": 3, "pcare": 4} and counts.by_age["30+"] == 7


def test_evidence_draws_match_weights_or_scores():
    weights = evidence_view({"rule": "splink", "comparisons": [
        {"comparison": "name", "level": "jaro>0.9", "match_weight": 4.2},
        {"comparison": "birth_date", "match_weight": -1.5}]})
    assert weights.weights == [("name: jaro>0.9", 4.2), ("birth_date", -1.5)]
    scores = evidence_view({"rule": "name-mismatch", "name_score": 83.3, "fields": {"gender": "agree"}})
    assert scores.weights == [] and scores.scores == [("name_score", 83.3)] and scores.fields == {"gender": "agree"}


def test_both_languages_have_every_message():
    assert set(MESSAGES["id"]) == set(MESSAGES["en"])


def test_the_dashboard_file_stands_alone(world):
    matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    html = render_dashboard_file(SETTINGS, ReportSources(world.keys, world.groups, world.reviews, world.jobs))
    assert "<svg" in html and "<script" not in html and 'href="http' not in html and "src=" not in html
    assert "Dasbor deduplikasi" in html


def test_an_items_page_shows_the_models_weights_and_version(world, monkeypatch):
    matched(world, "Budi Santoso")
    matched(world, "Budi")   # one given name under the NIK: the model leaves it to a person
    [item] = world.review.pending()
    model = item.evidence["model"]
    view = evidence_view(item.evidence)
    assert view.weights[0] == ("name: subset-or-swap", model["comparisons"]["name"]["weight"])
    assert ("model_version", model["model_version"]) in view.facts
    page = signed_in(world, monkeypatch).get(f"/items/{item.id}").text
    assert model["model_version"] in page and "name: subset-or-swap" in page


def test_a_reviewer_approves_the_ticked_records_of_a_cluster_item(world, monkeypatch):
    a, b = matched(world, "Hendra Gunawan"), matched(world, "Hendra")
    [pair] = world.review.pending()
    c = matched(world, "Siti Rahayu")
    cluster = ReviewItem.proposed(pair.group, sorted([a["id"], b["id"], c["id"]]), "ambiguous-match", {}, "2026-01-01")
    world.groups.transact(pair.group, lambda tx: tx.propose_reviews([cluster]))
    pair = ReviewItem.proposed(pair.group, sorted([a["id"], b["id"]]), "model-review", {}, "2026-01-02")
    world.groups.transact(pair.group, lambda tx: tx.propose_reviews([pair]))   # asked after the cluster
    client = signed_in(world, monkeypatch)
    page = client.get(f"/items/{cluster.id}").text
    assert page.count('name="patient_ids"') == 3
    client.post(f"/items/{cluster.id}/decide", data={"action": "approve", "csrf_token": token(page),
                                                     "patient_ids": [a["id"], b["id"]]})
    decided = world.review.get(cluster.id)
    assert decided.status == ReviewStatus.APPROVED and decided.decision["approved"] == sorted([a["id"], b["id"]])
    [message] = world.merge_requests_published()
    assert {message["master"], *message["duplicates"]} == {a["id"], b["id"]}
    # The pair's own item closed with the approval; its page and the history say why.
    assert world.review.get(pair.id).decision["closed_reason"] == "resolved-by-merge"
    assert "resolved-by-merge" in client.get(f"/items/{pair.id}").text
    # An undo of the approval asks the closed item's question again.
    world.review.undo_last("clerk@x")
    assert world.review.get(pair.id).status == ReviewStatus.PENDING
