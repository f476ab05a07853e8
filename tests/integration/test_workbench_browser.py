"""The review workbench in a real browser (headless Chromium driven by Selenium) against the local
stack with the functions running: a clerk signs in, filters the queue, opens an item, reveals a NIK,
approves one pair (the pipeline merges it), rejects another (a later event does not bring it back),
undoes a decision and views the dashboard; a viewer cannot decide; production mode refuses a request
without IAP's header. Screenshots go to docs/screenshots/.

The tests run in file order, each building on the state the last one left (one district per module).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.support.ui import WebDriverWait

from shared.bootstrap import audit_log, report_sources, review_service
from shared.config import Settings
from shared.domain.group import pair_key
from shared.domain.review import ReviewItem, ReviewStatus
from shared.fhir.client import FhirClient
from shared.services.report import work_in_progress
from tests.browser import headless_chrome
from tools.runtime.pipeline import LocalPipeline
from tools.runtime.workbench import local_config, serve
from workbench.config import WorkbenchConfig

REPO = Path(__file__).resolve().parents[2]
# The docs' screenshots are refreshed on purpose (DEDUP_SCREENSHOTS=docs/screenshots), not by every test run.
SCREENSHOTS = REPO / os.environ.get("DEDUP_SCREENSHOTS", ".artifacts/screenshots")
NIK_APPROVE = "3201011505900001"   # "Hendra Gunawan" / "Hendra Kurniawan Saputra": a human decides
NIK_REJECT = "3201040202880004"    # "Ahmad Fauzi" / "Ahmad Fauzan Hakim": two people, the clerk says
NIK_UNDO = "3201024507900002"      # "Siti Aminah" / "Dewi Lestari Kusumawati": rejected, then undone
CLERK, VIEWER = "petugas@dinkes.local", "tamu@dinkes.local"


def _patient(pid: str, nik: str, name: str, birth: str, gender: str, source: str, phone: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "active": True, "meta": {"source": f"urn:source:{source}"},
            "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": nik},
                           {"system": f"urn:mrn:{source}", "value": f"RM-{pid}"}],
            "name": [{"text": name}], "birthDate": birth, "gender": gender,
            "telecom": [{"system": "phone", "value": phone}],
            "address": [{"line": ["Jl. Malioboro No. 5"], "city": "Yogyakarta"}]}


PATIENTS = [
    _patient("h-simrs", NIK_APPROVE, "Hendra Gunawan", "1990-05-15", "male", "simrs", "081234567890"),
    # One NIK, family names that differ, no shared phone: the model cannot tell; a clerk who knows does.
    _patient("h-pcare", NIK_APPROVE, "Hendra Kurniawan Saputra", "1990-05-15", "male", "pcare", "085611112222"),
    _patient("d-simrs", NIK_REJECT, "Ahmad Fauzi", "1988-02-02", "male", "simrs", "081311112222"),
    _patient("d-pcare", NIK_REJECT, "Ahmad Fauzan Hakim", "1988-02-02", "male", "pcare", "085733334444"),
    _patient("s-simpus", NIK_UNDO, "Siti Aminah", "1990-07-05", "female", "simpus", "081255556666"),
    _patient("s-lab", NIK_UNDO, "Dewi Lestari Kusumawati", "1990-07-05", "female", "lab", "081277778888"),
]


def _observations(pid: str, n: int) -> list[dict]:
    return [{"resourceType": "Observation", "id": f"obs-{pid}-{i}", "status": "final", "code": {"text": "berat badan"},
             "subject": {"reference": f"Patient/{pid}"}} for i in range(n)]


@pytest.fixture(scope="module")
def district(stack, tmp_path_factory):
    server = stack.start_fhir_server()
    settings = Settings(project_id=f"test-wb-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url)
    env = {"FIRESTORE_EMULATOR_HOST": stack.env["FIRESTORE_EMULATOR_HOST"],
           "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
           "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url}
    pipeline = LocalPipeline(settings, env, tmp_path_factory.mktemp("functions")).start()
    workbench = serve(settings, local_config(secret_key="browser-test"))
    try:
        with FhirClient(settings.fhir_base_url) as fhir:
            for patient in PATIENTS:   # live writes: the rest-hook Subscription feeds the matching
                fhir.update(patient)
            outcomes = fhir.batch([{"resource": r, "request": {"method": "PUT", "url": f"Observation/{r['id']}"}}
                                   for r in _observations("h-simrs", 3) + _observations("h-pcare", 2)])
            assert all(o.ok for o in outcomes)
        wait_quiet(settings, pipeline)
        yield settings, pipeline, workbench
    finally:
        workbench.stop()
        pipeline.stop()
        server.stop()


def wait_quiet(settings: Settings, pipeline: LocalPipeline) -> None:
    pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(report_sources(settings)) > 0, timeout=180)


@pytest.fixture(scope="module")
def browser(chromium):
    driver = headless_chrome(*chromium)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def item_of(settings: Settings, *patient_ids: str):
    items = [i for i in review_service(settings).pending(limit=1000) if set(i.patient_ids) == set(patient_ids)]
    assert len(items) == 1, f"expected one pending item for {patient_ids}, got {len(items)}"
    return items[0]


def sign_in(browser, url: str, email: str) -> None:
    browser.delete_all_cookies()
    browser.get(url + "/queue")
    assert browser.current_url.endswith("/signin"), "an anonymous visitor goes to the sign-in"
    browser.find_element("id", "email").send_keys(email)
    click_and_load(browser, browser.find_element("id", "signin-submit"))
    assert email in browser.find_element("id", "whoami").text


def click_and_load(browser, element) -> None:
    """Click something that navigates, then wait for the new page: reading right after a click can read the old
    page's nodes while they go stale (seen as StaleElementReferenceException under load)."""
    from selenium.webdriver.support import expected_conditions

    old_page = browser.find_element("tag name", "html")
    element.click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(old_page))
    WebDriverWait(browser, 15).until(lambda b: b.execute_script("return document.readyState") == "complete")


def settled(browser, condition, seconds: float = 10.0):
    """Wait for a condition on a page that may still be replacing itself (stale nodes are retried)."""
    from selenium.common.exceptions import WebDriverException

    return WebDriverWait(browser, seconds, ignored_exceptions=(WebDriverException,)).until(condition)


def status_becomes(settings: Settings, item_id: str, status: ReviewStatus, timeout: float = 10.0) -> bool:
    """A click returns before the browser's POST is done: wait for the decision to land."""
    return WebDriverWait(None, timeout, poll_frequency=0.1).until(
        lambda _: review_service(settings).get(item_id).status == status)


def screenshot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def press(browser, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.find_element("tag name", "body").click()   # focus out of any field: shortcuts are for the page
    ActionChains(browser).send_keys(key).perform()


def test_a_clerk_signs_in_filters_the_queue_and_opens_an_item(district, browser):
    settings, _, workbench = district
    sign_in(browser, workbench.url, CLERK)
    assert browser.find_element("id", "total").text == "3"
    assert browser.find_element("tag name", "html").get_attribute("lang") == "id"   # Bahasa Indonesia first
    screenshot(browser, "queue")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "filter-reason")).select_by_value("name-mismatch")
    click_and_load(browser, browser.find_element("id", "filter-submit"))
    assert "reason=name-mismatch" in browser.current_url
    rows = browser.find_elements("css selector", "#queue-table tbody tr")
    assert len(rows) == 2 and all("name-mismatch" in row.text for row in rows)   # not the nik-conflict
    assert "Hendra" not in browser.page_source   # the queue shows no patient data
    expected = item_of(settings, "h-simrs", "h-pcare")
    click_and_load(browser, browser.find_element("css selector", f"a.open-item[href$='{expected.id}']"))
    assert browser.find_element("id", "item-id").text == expected.id
    records = browser.find_element("id", "records").text
    assert "Hendra Gunawan" in records and "Observation 3" in records and "Observation 2" in records
    assert NIK_APPROVE not in browser.page_source and "••••0001" in records   # masked until revealed
    assert "cmp-agree" in browser.find_element("css selector", "tr[data-field='birth_date']").get_attribute("class")
    assert "cmp-differ" in browser.find_element("css selector", "tr[data-field='name']").get_attribute("class")
    screenshot(browser, "item")


def test_revealing_a_nik_is_audited(district, browser):
    settings, _, _ = district
    item = item_of(settings, "h-simrs", "h-pcare")
    click_and_load(browser, browser.find_elements("css selector", "button.reveal")[0])
    assert NIK_APPROVE in browser.find_element("id", "records").text
    [entry] = [e for e in audit_log(settings).for_item(item.id) if e.action == "reveal-nik"]
    assert entry.actor == CLERK and NIK_APPROVE not in str(entry.to_doc())


def test_approving_with_the_keyboard_merges_the_pair_on_the_stack(district, browser):
    settings, pipeline, workbench = district
    item = item_of(settings, "h-simrs", "h-pcare")
    browser.get(f"{workbench.url}/items/{item.id}")
    browser.find_element("id", "note").send_keys("orang yang sama, nama keluarga salah ketik")
    press(browser, "a")
    assert status_becomes(settings, item.id, ReviewStatus.APPROVED)
    wait_quiet(settings, pipeline)
    decided = review_service(settings).get(item.id)
    assert decided.status == ReviewStatus.APPROVED and decided.decision["decided_by"] == CLERK
    assert decided.decision["note"] == "orang yang sama, nama keluarga salah ketik"
    browser.get(f"{workbench.url}/items/{item.id}")
    statuses = {e.get_attribute("data-status") for e in browser.find_elements("css selector", "[data-status]")}
    assert statuses == {"master", "merged"}, statuses
    assert browser.find_element("id", "history").text.count("done") >= 1   # the merge job, done
    with FhirClient(settings.fhir_base_url) as fhir:
        active = {pid: fhir.read("Patient", pid).get("active", True) for pid in ("h-simrs", "h-pcare")}
    assert sorted(active.values()) == [False, True]


def test_a_rejected_pair_stays_rejected_after_a_later_event(district, browser):
    settings, pipeline, workbench = district
    item = item_of(settings, "d-simrs", "d-pcare")
    browser.get(f"{workbench.url}/items/{item.id}")
    browser.find_element("id", "note").send_keys("dua orang berbeda")
    click_and_load(browser, browser.find_element("id", "reject"))
    assert status_becomes(settings, item.id, ReviewStatus.REJECTED)
    with FhirClient(settings.fhir_base_url) as fhir:   # a later change of one of them
        patient = fhir.read("Patient", "d-pcare")
        patient["telecom"] = [{"system": "phone", "value": "085799990000"}]
        fhir.update(patient)
    wait_quiet(settings, pipeline)
    pending = [i for i in review_service(settings).pending(limit=1000) if "d-pcare" in i.patient_ids]
    assert pending == []
    from shared.bootstrap import groups

    [group] = [g for g in groups(settings).all("nik_index") if "d-pcare" in g.members]
    assert pair_key("d-simrs", "d-pcare") in group.do_not_match


def test_a_clerk_undoes_a_rejection(district, browser):
    settings, _, workbench = district
    item = item_of(settings, "s-simpus", "s-lab")
    browser.get(f"{workbench.url}/items/{item.id}")
    click_and_load(browser, browser.find_element("id", "reject"))
    assert status_becomes(settings, item.id, ReviewStatus.REJECTED)
    settled(browser, lambda b: b.find_elements("css selector", ".flash"))
    press(browser, "u")
    assert status_becomes(settings, item.id, ReviewStatus.PENDING)
    settled(browser, lambda b: "dibatalkan" in b.find_element("css selector", ".flash").text)
    assert browser.find_element("id", "item-id").text == item.id
    assert browser.find_element("id", "decide-form")


def test_the_dashboard_shows_the_figures(district, browser):
    settings, _, workbench = district
    browser.get(f"{workbench.url}/dashboard")
    assert browser.find_element("id", "tile-merges-done").text == "1"
    assert browser.find_element("id", "tile-pending").text == "1"
    assert len(browser.find_elements("css selector", "svg.chart")) >= 5
    screenshot(browser, "dashboard")
    click_and_load(browser, browser.find_element("id", "switch-language"))
    assert settled(browser, lambda b: b.find_element("tag name", "h1").text == "Deduplication dashboard")
    click_and_load(browser, browser.find_element("id", "switch-language"))



def test_a_viewer_cannot_decide(district, browser):
    settings, _, workbench = district
    item = item_of(settings, "s-simpus", "s-lab")
    sign_in(browser, workbench.url, VIEWER)
    browser.get(f"{workbench.url}/items/{item.id}")
    assert browser.find_element("id", "viewer-note")
    assert not browser.find_elements("id", "decide-form") and not browser.find_elements("css selector", "button.reveal")
    # Even a hand-made POST with a valid session and CSRF token is refused.
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.page_source).group(1)
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    response = httpx.post(f"{workbench.url}/items/{item.id}/decide", cookies=cookies,
                          data={"action": "approve", "csrf_token": token})
    assert response.status_code == 403
    assert review_service(settings).get(item.id).status == ReviewStatus.PENDING


def test_production_mode_refuses_a_request_without_the_iap_header(district, browser):
    settings, _, _ = district
    config = WorkbenchConfig(mode="production", roles={CLERK: "reviewer"}, secret_key="prod-test",
                             iap_audience="/projects/123/locations/asia-southeast2/services/dedup-workbench")
    production = serve(settings, config)
    try:
        browser.delete_all_cookies()
        browser.get(production.url + "/queue")
        assert browser.find_element("id", "error").text.startswith("Belum masuk")
        for headers in ({}, {"x-goog-iap-jwt-assertion": "not-a-token"}):
            response = httpx.get(production.url + "/queue", headers=headers)
            assert response.status_code == 401 and "no-store" in response.headers["cache-control"]
        assert httpx.get(production.url + "/signin").status_code == 401   # no development sign-in here
        assert httpx.post(production.url + "/items/x/decide", data={"action": "approve"}).status_code == 401
    finally:
        production.stop()


def test_a_clerk_approves_the_ticked_records_of_a_cluster_item(district, browser):
    """An item naming three records of one NIK: the clerk unticks the one who is someone else and approves;
    the pipeline merges the two, the third stays, and the pair's own item shows it closed by that merge."""
    settings, pipeline, workbench = district
    from shared.bootstrap import groups

    nik, ids = "3201031506700003", ("r-simrs", "r-pcare", "r-lab")
    with FhirClient(settings.fhir_base_url) as fhir:
        for pid, name, source, phone in (("r-simrs", "Rudi Hartono", "simrs", "081200000001"),
                                         ("r-pcare", "Rudi Hartono Wibowo", "pcare", "085700000002"),
                                         ("r-lab", "Rudi Setiawan", "lab", "081300000003")):
            fhir.update(_patient(pid, nik, name, "1970-06-15", "male", source, phone))
    wait_quiet(settings, pipeline)
    group_id = next(g for g in groups(settings).all("nik_index") if "r-simrs" in g.members).id
    cluster = ReviewItem.proposed(group_id, sorted(ids), "ambiguous-match", {}, "2026-01-01T00:00:00+00:00")
    groups(settings).transact(group_id, lambda tx: tx.propose_reviews([cluster]))
    pair = ReviewItem.proposed(group_id, ["r-pcare", "r-simrs"], "model-review", {}, "2026-01-01T00:00:00+00:00")
    groups(settings).transact(group_id, lambda tx: tx.propose_reviews([pair]))

    sign_in(browser, workbench.url, CLERK)
    browser.get(f"{workbench.url}/items/{cluster.id}")
    boxes = browser.find_elements("css selector", "#same-person input[name='patient_ids']")
    assert sorted(b.get_attribute("value") for b in boxes) == sorted(ids) and all(b.is_selected() for b in boxes)
    browser.find_element("id", "same-r-lab").click()
    assert not browser.find_element("id", "same-r-lab").is_selected()
    screenshot(browser, "item-subset")
    click_and_load(browser, browser.find_element("id", "approve"))
    assert status_becomes(settings, cluster.id, ReviewStatus.APPROVED)
    decided = review_service(settings).get(cluster.id)
    assert decided.decision["approved"] == ["r-pcare", "r-simrs"] and decided.decision["decided_by"] == CLERK
    assert review_service(settings).get(pair.id).decision["closed_reason"] == "resolved-by-merge"
    wait_quiet(settings, pipeline)
    with FhirClient(settings.fhir_base_url) as fhir:
        active = {pid: fhir.read("Patient", pid).get("active", True) for pid in ids}
    assert active["r-lab"] is True and sorted([active["r-simrs"], active["r-pcare"]]) == [False, True]
    browser.get(f"{workbench.url}/items/{pair.id}")
    assert settled(browser, lambda b: b.find_element("id", "closed-reason").text == "resolved-by-merge")
    assert "resolved-by-merge" in browser.find_element("id", "history-items").text
