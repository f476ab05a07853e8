"""The district's model on the local stack: `dedup model train` reads the FHIR server and stores a version
(not current), `dedup model list` shows it, `dedup model promote` makes it current, and the running
match-patient function (a functions-framework process, fed by the FHIR Subscription through the relay)
decides the next record with it: the review item names the promoted version, `dedup review show` prints
it, and the item decided before the promote keeps the version that made it.

One district for the module: a generated one (400 patients) is loaded before the pipeline starts (a bulk
import notifies nothing), the model store is a directory of the test's own."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from typer.testing import CliRunner

from ops.cli import app
from shared.bootstrap import report_sources
from shared.config import Settings
from shared.fhir.client import FhirClient
from shared.linkage.model import default_model, model_versions
from shared.services.report import work_in_progress
from tools.dataset.generate import Params, generate, iter_resources
from tools.runtime.pipeline import LocalPipeline

runner = CliRunner()
PATIENTS = 400
NIK_1 = "3201011505900001"   # a man born 1990-05-15
NIK_2 = "3201020607850002"   # a man born 1985-07-06


@pytest.fixture(scope="module")
def district(stack, tmp_path_factory):
    server = stack.start_fhir_server()
    store = tmp_path_factory.mktemp("models")
    settings = Settings(project_id=f"test-model-{uuid.uuid4().hex[:8]}", fhir_base_url=server.base_url,
                        model_store=str(store))
    generated = tmp_path_factory.mktemp("district")
    generate(generated, Params(patients=PATIENTS, seed=13, resources_per_patient=0.0), settings)
    patients = [p for phase in ("bulk", "stream") for p in iter_resources(generated, phase, "Patient")]
    with FhirClient(settings.fhir_base_url) as fhir:
        for start in range(0, len(patients), 100):
            outcomes = fhir.batch([{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
                                   for p in patients[start:start + 100]])
            assert all(o.ok for o in outcomes)
    env = {"FIRESTORE_EMULATOR_HOST": stack.env["FIRESTORE_EMULATOR_HOST"],
           "PUBSUB_EMULATOR_HOST": stack.env["PUBSUB_EMULATOR_HOST"],
           "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url,
           # the functions read the test's store, and its pointer again every second
           "DEDUP_MODEL_STORE": str(store), "DEDUP_MODEL_REFRESH_SECONDS": "1"}
    log_dir = tmp_path_factory.mktemp("functions")
    pipeline = LocalPipeline(settings, env, log_dir, clinical_subscriptions=False).start()
    try:
        yield settings, pipeline, log_dir
    finally:
        pipeline.stop()
        server.stop()


def cli(settings: Settings, monkeypatch, *args: str):
    monkeypatch.setenv("DEDUP_MODEL_STORE", settings.model_store)
    result = runner.invoke(app, ["--project", settings.project_id, "--fhir-url", settings.fhir_base_url, *args],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def arrive_and_decide(settings: Settings, pipeline: LocalPipeline, nik: str, names: tuple[str, str],
                      birth: str) -> list[dict]:
    """Two records of one NIK, the second a single given name of the first: the rules leave it to the model,
    which leaves it to a person (no shared phone). Returns the pending review items naming them."""
    with FhirClient(settings.fhir_base_url) as fhir:
        ids = [fhir.create({"resourceType": "Patient", "active": True, "name": [{"text": name}], "birthDate": birth,
                            "gender": "male", "identifier": [{"system": settings.nik_system, "value": nik}]})["id"]
               for name in names]
    pipeline.wait_until_quiet(busy_check=lambda: work_in_progress(report_sources(settings)) > 0, timeout=180)
    items = [i for i in report_sources(settings).reviews.pending(None, 500) if set(ids) <= set(i.patient_ids)]
    assert items, f"no review item for {ids}"
    return [i.as_dict() for i in items]


def test_train_promote_and_the_running_match_function_decides_with_the_new_version(district, monkeypatch):
    settings, pipeline, log_dir = district

    before = arrive_and_decide(settings, pipeline, NIK_1, ("Budi Santoso", "Budi"), "1990-05-15")
    assert {v for item in before for v in model_versions(item["evidence"])} == {default_model().version}

    trained = json.loads(cli(settings, monkeypatch, "model", "train", "--by", "tester@district", "--json").stdout)
    assert trained["patients"] == PATIENTS + 2 and trained["promoted"] is False and trained["current"] is None
    assert trained["comparison"]["model_version"] == default_model().version and trained["comparison"]["pairs"] > 0
    assert {row["comparison"] for row in trained["parameters"]} == {"name", "birth_date", "nik", "sex", "phone",
                                                                     "region"}
    version = trained["version"]
    listed = json.loads(cli(settings, monkeypatch, "model", "list", "--json").stdout)
    assert [(row["version"], row["current"], row["created_by"], row["patients"]) for row in listed] == [
        (version, False, "tester@district", PATIENTS + 2)]

    promoted = json.loads(cli(settings, monkeypatch, "model", "promote", version, "--by", "lead@district",
                              "--json").stdout)
    assert promoted == {"current": version, "previous": None, "promoted_by": "lead@district",
                        "promoted_at": promoted["promoted_at"]}
    assert json.loads(cli(settings, monkeypatch, "model", "list", "--json").stdout)[0]["current"] is True
    time.sleep(1.5)   # DEDUP_MODEL_REFRESH_SECONDS: the running function reads the pointer again

    after = arrive_and_decide(settings, pipeline, NIK_2, ("Agus Salim", "Agus"), "1985-07-06")
    assert {v for item in after for v in model_versions(item["evidence"])} == {version}
    shown = cli(settings, monkeypatch, "review", "show", after[0]["id"])
    assert f"model {version}" in shown.output

    # The item decided before the promote is as it was: a new model re-decides nothing.
    again = {i.id: i.as_dict() for i in report_sources(settings).reviews.pending(None, 500)}
    assert all(again[item["id"]]["evidence"] == item["evidence"] for item in before)
    # The function logged what it loaded: ids and figures only.
    loaded = [json.loads(line) for line in (log_dir / "match-patient.log").read_text().splitlines()
              if '"model_loaded"' in line]
    assert [entry["model_version"] for entry in loaded][-1] == version
    assert loaded[-1]["source"] == "store" and loaded[-1]["size_bytes"] > 1000 and "load_ms" in loaded[-1]
