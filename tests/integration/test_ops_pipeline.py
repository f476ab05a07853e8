"""The functions running as in production (functions-framework processes fed by emulator push
subscriptions, a FHIR rest-hook Subscription calling the relay) and every ops subcommand against them.

One district per module: patients are bulk-loaded BEFORE the pipeline starts (a bulk import publishes
no notifications), then the tests run in file order, each building on the state the last one left.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ops.cli import app
from shared.bootstrap import report_sources
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.services.report import work_in_progress
from tools.runtime.pipeline import LocalPipeline

REPO = Path(__file__).resolve().parents[2]
NIK_A = "3201011203850001"  # male, born 12-03-85: three copies, bulk-loaded
NIK_B = "3201024507900002"  # female (45 = 5 + 40), born 05-07-90: two different people share it
NIK_C = "3201031506700003"
NIK_D = "3201040202880004"  # one person whose two records disagree on a name: a human decides
runner = CliRunner()


def _patient(pid: str, nik: str, name: str, birth: str, gender: str, source: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "active": True, "meta": {"source": f"urn:source:{source}"},
            "identifier": [{"system": "https://fhir.kemkes.go.id/id/nik", "value": nik}],
            "name": [{"text": name}], "birthDate": birth, "gender": gender}


def _clinical(pid: str, n: int) -> list[dict]:
    resources = []
    for i in range(n):
        enc = f"enc-{pid}-{i}"
        resources.append({"resourceType": "Encounter", "id": enc, "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": f"Patient/{pid}"}})
        resources.append({"resourceType": "Observation", "id": f"obs-{pid}-{i}", "status": "final",
                          "code": {"text": "body weight"}, "subject": {"reference": f"Patient/{pid}"},
                          "encounter": {"reference": f"Encounter/{enc}"},
                          "performer": [{"reference": f"Patient/{pid}"}]})
    return resources


PATIENTS = [
    _patient("a-simrs", NIK_A, "Budi Santoso", "1985-03-12", "male", "simrs"),
    _patient("a-simpus", NIK_A, "BUDI SANTOSO", "1985-03-12", "male", "simpus"),
    _patient("a-lab", NIK_A, "Tn. Budi Santoso", "1985-03-12", "male", "lab"),
    _patient("b-siti", NIK_B, "Siti Aminah", "1990-07-05", "female", "simrs"),
    _patient("b-dewi", NIK_B, "Dewi Lestari Kusumawati", "1990-07-05", "female", "pcare"),
    _patient("c-only", NIK_C, "Agus Salim", "1970-06-15", "male", "sikda"),
    _patient("d-simrs", NIK_D, "Ahmad Fauzi", "1988-02-02", "male", "simrs"),
    _patient("d-pcare", NIK_D, "Ahmad Fauzan Hakim", "1988-02-02", "male", "pcare"),
]
CLINICAL = [r for pid in ("a-simrs", "a-simpus", "a-lab") for r in _clinical(pid, 3)]


@pytest.fixture(scope="module")
def district(stack, tmp_path_factory):
    server = stack.start_fhir_server()
    settings = Settings(project_id=f"test-ops-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url)
    env = {"FIRESTORE_EMULATOR_HOST": stack.env["FIRESTORE_EMULATOR_HOST"],
           "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
           "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url}
    with FhirClient(settings.fhir_base_url) as fhir:
        outcomes = fhir.batch([{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                               for r in PATIENTS + CLINICAL])
        assert all(o.ok for o in outcomes)
    # Patients only: late references here are left to reconcile, the safety net these tests exercise
    # (the live fix has its own test in test_dedup_up.py).
    pipeline = LocalPipeline(settings, env, tmp_path_factory.mktemp("functions"), clinical_subscriptions=False).start()
    try:
        yield settings, pipeline, env
    finally:
        pipeline.stop()
        server.stop()


def cli(settings: Settings, *args: str, input: str | None = None):
    result = runner.invoke(app, ["--project", settings.project_id, "--fhir-url", settings.fhir_base_url, *args],
                           input=input, catch_exceptions=False)
    return result


def wait_quiet(settings: Settings, pipeline: LocalPipeline, firestore_db) -> None:
    pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(report_sources(settings)) > 0, timeout=180)


@pytest.fixture(scope="module")
def db(district):
    from google.cloud import firestore

    return firestore.Client(project=district[0].project_id)


def test_force_merge_of_a_bulk_imported_nik(district, db):
    settings, pipeline, _ = district
    result = cli(settings, "force-merge", "-", "--reason", "bulk import cleanup", "--by", "ops@district",
                 input=f"{NIK_A}\n")
    assert result.exit_code == 0, result.output
    assert NIK_A not in result.output and "published force-merge" in result.output
    wait_quiet(settings, pipeline, db)

    with FhirClient(settings.fhir_base_url) as fhir:
        patients = {pid: fhir.read("Patient", pid) for pid in ("a-simrs", "a-simpus", "a-lab")}
        active = [pid for pid, p in patients.items() if p.get("active", True)]
        assert len(active) == 1, active
        master = active[0]
        for pid, patient in patients.items():
            if pid != master:
                assert patient["active"] is False
                assert {"other": {"reference": f"Patient/{master}"}, "type": "replaced-by"} in patient["link"]
        duplicates = {f"Patient/{pid}" for pid in patients if pid != master}
        for resource_type in ("Encounter", "Observation"):
            for resource in fhir.search(resource_type, {}):
                assert not duplicates & _references(resource), resource["id"]
        assert list(fhir.search("Provenance", {"target": f"Patient/{master}"}))
    assert pipeline.dead_letter_counts() == {t: 0 for t in pipeline.dead_letter_counts()}


def _references(resource) -> set[str]:
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                found.add(node["reference"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(resource)
    return found


def _only_job(db, settings) -> dict:
    jobs = [{"id": s.id, **s.to_dict()} for s in db.collection(settings.collection("merge_jobs")).stream()]
    assert len(jobs) == 1, [j["id"] for j in jobs]
    return jobs[0]


def test_status_preview_and_report_after_the_merge(district, db):
    settings, _, _ = district
    job = _only_job(db, settings)
    result = cli(settings, "status", job["id"], "--json")
    assert result.exit_code == 0 and '"status": "done"' in result.output

    result = cli(settings, "preview", job["master"], *job["duplicates"], "--json")
    assert result.exit_code == 0 and result.output.strip() == "{}"  # nothing left to rewrite

    result = cli(settings, "report", "--json")
    assert result.exit_code == 0
    import json

    report = json.loads(result.output)
    assert report["merges"]["done"] == 1
    assert report["resources_rewritten"] == 12  # 2 duplicates x 3 x (Encounter + Observation)

    assert cli(settings, "status", "no-such-job").exit_code == 3  # not found


def test_unmerge_restores_references(district, db):
    settings, pipeline, _ = district
    job = _only_job(db, settings)
    result = cli(settings, "unmerge", job["id"], "--json")
    assert result.exit_code == 0, result.output
    wait_quiet(settings, pipeline, db)
    with FhirClient(settings.fhir_base_url) as fhir:
        for pid in job["duplicates"]:
            assert fhir.read("Patient", pid).get("active", True) is True
            assert {r["id"] for r in fhir.search("Observation", {"subject": f"Patient/{pid}"})} == {
                f"obs-{pid}-{i}" for i in range(3)}
    assert _only_job(db, settings)["status"] == "unmerged"


def test_backfill_indexes_the_bulk_load_beside_the_live_pipeline(district, db, tmp_path):
    """The batch backfill with the functions running (kill and resume: tests/integration/test_batch_backfill.py)."""
    import json

    settings, pipeline, _ = district
    run_id = "backfill-beside-live"
    result = cli(settings, "backfill", "--run-id", run_id, "--work-dir", str(tmp_path / "work"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "done" and summary["patients"] >= len(PATIENTS)
    assert db.collection(settings.collection("backfill_runs")).document(run_id).get().to_dict()["status"] == "done"
    wait_quiet(settings, pipeline, db)
    indexed = {s.id for s in db.collection(settings.collection("patient_keys")).stream()}
    assert indexed >= {p["id"] for p in PATIENTS}
    again = cli(settings, "backfill", "--run-id", run_id, "--json")   # a finished run is not run again
    assert again.exit_code == 0 and json.loads(again.stdout)["patients"] == summary["patients"]


def test_review_list_show_reject_and_approve(district, db):
    settings, pipeline, _ = district
    import json

    result = cli(settings, "review", "list", "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    conflict = [i for i in items if set(i["patient_ids"]) == {"b-siti", "b-dewi"}]
    assert conflict, items
    item = conflict[0]
    assert item["reason"] in ("nik-conflict", "name-mismatch")

    shown = cli(settings, "review", "show", item["id"])
    assert shown.exit_code == 0 and "Siti" not in shown.output  # no patient details unless asked
    detailed = cli(settings, "review", "show", item["id"], "--details")
    assert detailed.exit_code == 0 and "Siti" in detailed.output and "Aminah" in detailed.output

    rejected = cli(settings, "review", "reject", item["id"], "--by", "reviewer@district")
    assert rejected.exit_code == 0, rejected.output
    assert cli(settings, "review", "reject", item["id"], "--by", "x").exit_code == 1  # decided already
    group = db.collection(settings.collection("nik_index")).document(item["group"].split("/", 1)[1]).get()
    assert "b-dewi|b-siti" in group.to_dict()["do_not_match"]

    pending = json.loads(cli(settings, "review", "list", "--json").output)
    assert all(set(i["patient_ids"]) != {"b-siti", "b-dewi"} for i in pending)

    # Approval: the reviewer says the two NIK-D records are one person; the pipeline merges them.
    approve = [i for i in pending if set(i["patient_ids"]) == {"d-simrs", "d-pcare"}]
    assert approve, pending
    approved = cli(settings, "review", "approve", approve[0]["id"], "--by", "reviewer@district")
    assert approved.exit_code == 0 and "approved" in approved.output, approved.output
    wait_quiet(settings, pipeline, db)
    with FhirClient(settings.fhir_base_url) as fhir:
        states = [fhir.read("Patient", pid).get("active", True) for pid in ("d-simrs", "d-pcare")]
    assert sorted(states) == [False, True]


def test_force_merge_rejects_an_invalid_nik_without_echoing_it(district):
    settings, _, _ = district
    result = cli(settings, "force-merge", "-", "--reason", "x", "--by", "y", input="1234-5678\n")
    assert result.exit_code == 2
    assert "12345678" not in result.output and "1234-5678" not in result.output
    assert "not a valid NIK" in result.output


def test_reconcile_rewrites_references_that_arrive_after_the_merge(district, db):
    """Late data: a legacy system still sends an Observation for its own, now inactive, patient id."""
    settings, pipeline, _ = district
    import json

    with FhirClient(settings.fhir_base_url) as fhir:
        patients = {pid: fhir.read("Patient", pid) for pid in ("d-simrs", "d-pcare")}
        duplicate = next(pid for pid, p in patients.items() if p.get("active") is False)
        master = next(pid for pid in patients if pid != duplicate)
        fhir.update({"resourceType": "Observation", "id": "obs-late", "status": "final", "code": {"text": "glucose"},
                     "subject": {"reference": f"Patient/{duplicate}"}})
        result = cli(settings, "reconcile", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["rewritten"] == {"Observation": 1}
        assert fhir.read("Observation", "obs-late")["subject"] == {"reference": f"Patient/{master}"}
        # Journaled under the merge, so an unmerge of that job puts it back too.
        job = next(s.to_dict() for s in db.collection(settings.collection("merge_jobs")).stream()
                   if s.to_dict()["master"] == master)
        journal = db.collection(settings.collection("merge_jobs")).document(job["job_id"]).collection("journal")
        assert journal.document("Observation__obs-late").get().exists
        again = cli(settings, "reconcile", "--json")
        assert json.loads(again.output)["rewritten"] == {}

        # A reference no search parameter reaches (inside an extension) needs the full scan.
        hidden = {"resourceType": "Flag", "id": "flag-late", "status": "active", "code": {"text": "fall risk"},
                  "subject": {"reference": "Patient/c-only"},
                  "extension": [{"url": "https://example.org/fhir/reported-by",
                                 "valueReference": {"reference": f"Patient/{duplicate}"}}]}
        fhir.update(hidden)
        assert json.loads(cli(settings, "reconcile", "--json").output)["rewritten"] == {}
        full = cli(settings, "reconcile", "--full", "--json")
        assert json.loads(full.output)["rewritten"] == {"Flag": 1}
        flag = fhir.read("Flag", "flag-late")
        assert flag["extension"][0]["valueReference"] == {"reference": f"Patient/{master}"}
        assert flag["subject"] == {"reference": "Patient/c-only"}

        # The scheduled path: Cloud Scheduler publishes to ops-reconcile, the reconcile function runs.
        from shared.adapters.pubsub import Publisher
        from shared.messages import ReconcileRun

        fhir.update({"resourceType": "Observation", "id": "obs-later", "status": "final", "code": {"text": "hb"},
                     "subject": {"reference": f"Patient/{duplicate}"}})
        Publisher(settings).send(ReconcileRun(full=False))
        wait_quiet(settings, pipeline, db)
        assert fhir.read("Observation", "obs-later")["subject"] == {"reference": f"Patient/{master}"}


def test_healthcare_api_notifications_and_relayed_ones_together_merge_once(district, db):
    """Both production paths at once: the rest-hook relay and Healthcare-API-style notifications
    (NameOnly, resource name as data) for the same two new records; one merge, not two."""
    settings, pipeline, _ = district
    import base64

    from google.cloud import pubsub_v1

    nik = "3201051010750005"
    pair = [_patient("e-simrs", nik, "Hendra Gunawan", "1975-10-10", "male", "simrs"),
            _patient("e-lab", nik, "HENDRA GUNAWAN", "1975-10-10", "male", "lab")]
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(settings.project_id, settings.topic_patient_changes)
    store = "projects/district/locations/asia-southeast2/datasets/dinkes/fhirStores/main"
    with FhirClient(settings.fhir_base_url) as fhir:
        for patient in pair:
            fhir.update(patient)  # the Subscription relays this one
            publisher.publish(topic, f"{store}/fhir/Patient/{patient['id']}".encode(), action="CreateResource",
                              resourceType="Patient", payloadType="NameOnly", storeName=store).result(timeout=30)
        publisher.publish(topic, base64.b64encode(b"not a resource name"), action="CreateResource",
                          resourceType="Patient").result(timeout=30)  # malformed: acked, never dead-lettered
        wait_quiet(settings, pipeline, db)
        states = sorted(fhir.read("Patient", p["id"]).get("active", True) for p in pair)
    assert states == [False, True]
    jobs = [s.to_dict() for s in db.collection(settings.collection("merge_jobs")).stream()
            if {s.to_dict()["master"], *s.to_dict()["duplicates"]} == {"e-simrs", "e-lab"}]
    assert len(jobs) == 1 and jobs[0]["status"] == "done"
    assert not any(pipeline.dead_letter_counts().values())
