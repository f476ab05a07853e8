"""The whole product as `dedup up` runs it (its own emulators, FHIR server, every function, the FHIR
Subscriptions), and every ops command against it as a user runs them: `dedup ...` processes reading
the stack's env file. Tests run in file order, each building on the state the last one left; the last
one presses Ctrl-C and checks that nothing is left running. `up --detach` / `down` get their own stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.config import Settings
from shared.fhir.client import FhirClient

REPO = Path(__file__).resolve().parents[2]
NIK = "3201011203850001"
SETTINGS = Settings()
# Variables of the test session's own stack that would win over the env file.
SESSION_VARIABLES = ("DEDUP_PROJECT_ID", "DEDUP_FHIR_BASE_URL", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
                     "DEDUP_ENV_FILE", "DEDUP_STACK_DIR")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SESSION_VARIABLES}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def start_up(state_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ops", "up", *args], cwd=REPO,
                            env=clean_env(DEDUP_STACK_DIR=str(state_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen | None, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"dedup up exited {process.returncode}:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not written after {seconds} s")
        time.sleep(0.2)


def gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Product:
    def __init__(self, state_dir: Path, process: subprocess.Popen):
        self.state_dir, self.process = state_dir, process
        self.state = json.loads((state_dir / "state.json").read_text())
        self.env = self.state["env"]
        self.fhir_url = self.env["DEDUP_FHIR_BASE_URL"]

    def dedup(self, *args: str, input: str | None = None, expect: int | None = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "ops", *args], cwd=REPO, input=input, text=True,
                                capture_output=True, timeout=180,
                                env=clean_env(DEDUP_ENV_FILE=str(self.state_dir / "env")))
        if expect is not None:
            assert result.returncode == expect, f"dedup {' '.join(args)} -> {result.returncode}\n" \
                                                f"{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str, input: str | None = None):
        return json.loads(self.dedup(*args, "--json", input=input).stdout)

    def url(self, function: str) -> str:
        return f"http://127.0.0.1:{self.state['ports'][function]}"


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("stack")
    process = start_up(state_dir)
    try:
        wait_for(state_dir / "env", process)
        yield Product(state_dir, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


def patient(pid: str, name: str, birth: str, gender: str = "male", nik: str | None = None) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "active": True, "name": [{"text": name}],
                "birthDate": birth, "gender": gender, "identifier": [{"system": "urn:mrn", "value": pid}]}
    if nik:
        resource["identifier"].append({"system": SETTINGS.nik_system, "value": nik})
    return resource


def observation(oid: str, pid: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"}}


def wait_until(check, seconds: float = 60, step: float = 0.5):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def test_status_shows_every_component(product):
    status = product.json("status")
    names = {row["name"] for row in status["components"]}
    listed = {f["name"] for f in json.loads((REPO / "functions" / "functions.json").read_text())["functions"]}
    assert names == {"firestore", "pubsub", "fhir"} | listed
    assert all(row["ok"] for row in status["components"])


def test_your_own_data_load_backfill_review(product, tmp_path):
    data = tmp_path / "export"
    data.mkdir()
    patients = [patient("nik-1", "Budi Santoso", "1985-03-12", nik=NIK),
                patient("nik-2", "BUDI SANTOSO", "1985-03-12", nik=NIK),
                patient("free-1", "Sri Wahyuni", "1970-01-01", "female"),
                patient("free-2", "Wahyuni", "1971-02-02", "female")]
    (data / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    (data / "Observation.ndjson").write_text("".join(
        json.dumps(observation(f"obs-{p['id']}", p["id"])) + "\n" for p in patients))
    loaded = product.json("load", str(data))
    assert loaded["loaded"] == {"Patient": 4, "Observation": 4} and loaded["failed"] == 0
    backfill = product.json("backfill")
    assert backfill["status"] == "done" and backfill["patients"] == 4
    # The two NIK records are one man: merged (live through the Subscription, or by the backfill).
    jobs = wait_until(lambda: [j for j in product.json("jobs", "--status", "done")
                               if set([j["master"], *j["duplicates"]]) == {"nik-1", "nik-2"}])
    assert jobs, product.json("jobs")
    assert isinstance(product.json("review", "list"), list)
    report = product.json("report")
    assert report["merges"]["done"] >= 1


def test_jobs_filters(product):
    by_nik = product.json("jobs", "--nik-from-stdin", input=f"{NIK}\n")
    assert len(by_nik) == 1 and {by_nik[0]["master"], *by_nik[0]["duplicates"]} == {"nik-1", "nik-2"}
    assert [j["job_id"] for j in product.json("jobs", "--patient", "nik-2")] == [by_nik[0]["job_id"]]
    assert product.json("jobs", "--stuck") == []
    assert product.json("jobs", "--older-than", "1d") == []
    assert NIK not in product.dedup("jobs", "--nik-from-stdin", input=f"{NIK}\n").stdout


def test_preview_checks_its_inputs(product):
    unknown = product.dedup("preview", "free-1", "no-such-patient", expect=3)
    assert unknown.stderr.strip() == "error: Patient/no-such-patient does not exist"
    same = product.dedup("preview", "free-1", "free-1", expect=2)
    assert "both the master and a duplicate" in same.stderr and len(same.stderr.strip().splitlines()) == 1
    assert product.json("preview", "free-1", "free-2") == {"Observation": 1}


def test_explicit_merge_of_two_nik_less_records(product):
    merged = product.json("merge", "--master", "free-1", "--duplicate", "free-2", "--by", "ops@test", "--yes",
                          "--wait", "120")
    assert merged["status"] == "done" and merged["duplicates"] == ["free-2"]
    with FhirClient(product.fhir_url) as fhir:
        duplicate = fhir.read("Patient", "free-2")
        assert duplicate["active"] is False
        assert {"type": "replaced-by", "other": {"reference": "Patient/free-1"}} in duplicate["link"]
        assert fhir.read("Observation", "obs-free-2")["subject"]["reference"] == "Patient/free-1"
    links = product.json("links", "free-2")
    assert links["replaced_by"] == ["free-1"] and [m["job_id"] for m in links["merges"]] == [merged["job_id"]]
    assert any("merge" in p["activity"] for p in links["provenance"])
    assert product.json("status", merged["job_id"])["status"] == "done"
    with FhirClient(product.fhir_url) as fhir:
        fhir.update(patient("free-3", "Sri Wahyuningsih", "1972-03-03", "female"))
    unconfirmed = product.dedup("merge", "--master", "free-1", "--duplicate", "free-3", "--by", "x", expect=1)
    assert "not confirmed" in unconfirmed.stderr and "--yes" in unconfirmed.stderr
    refused = product.dedup("merge", "--master", "free-1", "--duplicate", "free-2", "--by", "x", "--yes", expect=1)
    assert "already replaced" in refused.stderr


def test_a_late_reference_is_fixed_live(product):
    with FhirClient(product.fhir_url) as fhir:
        fhir.update(observation("late-obs", "free-2"))   # a legacy system still writes to the old id
        began = time.monotonic()
        fixed = wait_until(lambda: fhir.read("Observation", "late-obs")["subject"]["reference"] == "Patient/free-1",
                           seconds=30, step=0.2)
        assert fixed, "the late reference was not rewritten within 30 s"
        assert time.monotonic() - began < 15
    # Nothing left for the scheduled safety net.
    assert product.json("reconcile")["rewritten"] == {}


def merge_parameters(source: str, target: str, *extra: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{source}"}},
        {"name": "target-patient-identifier", "valueIdentifier": {"system": "urn:mrn", "value": target}}, *extra]}


def test_patient_merge_operation(product):
    with FhirClient(product.fhir_url) as fhir:
        for pid, birth in (("op-1", "1960-02-01"), ("op-2", "1960-02-02"), ("op-3", "1960-02-03"),
                           ("op-4", "1960-02-04")):
            fhir.update(patient(pid, f"Joko {pid}", birth))
        fhir.update(observation("obs-op-2", "op-2"))
        url = product.url("patient-merge") + "/Patient/$merge"
        # The run's relay secret, which the stack writes beside its settings (like the FHIR server's header).
        token = {"Authorization": f"Bearer {product.env['DEDUP_RELAY_SHARED_SECRET']}"}

        def call(body, headers=token):
            response = httpx.post(url, json=body, headers=headers, timeout=120)
            return response.status_code, response.json()

        status, body = call(merge_parameters("op-2", "op-1", {"name": "preview", "valueBoolean": True}))
        assert status == 200 and [p["name"] for p in body["parameter"]] == ["input", "outcome", "result"]
        assert "1 resource(s) would be rewritten" in body["parameter"][1]["resource"]["issue"][0]["diagnostics"]
        assert fhir.read("Patient", "op-2").get("active") is True   # a preview writes nothing

        status, body = call(merge_parameters("op-2", "op-1"))
        assert status == 200, body
        assert body["parameter"][2]["resource"]["id"] == "op-1"
        assert fhir.read("Patient", "op-2")["active"] is False
        assert fhir.read("Observation", "obs-op-2")["subject"]["reference"] == "Patient/op-1"

        status, body = call(merge_parameters("op-3", "op-1"), {**token, "Prefer": "respond-async"})
        assert status == 202 and body["parameter"][-1]["name"] == "task"
        task = body["parameter"][-1]["resource"]
        assert task["resourceType"] == "Task" and task["status"] == "in-progress"
        completed = wait_until(lambda: fhir.read("Task", task["id"])["status"] == "completed", seconds=60)
        assert completed and fhir.read("Patient", "op-3")["active"] is False

        status, body = call({"resourceType": "Patient"})
        assert status == 400 and body["resourceType"] == "OperationOutcome"
        status, _ = call({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "Patient/op-4"}}]})
        assert status == 400   # no target
        status, body = call(merge_parameters("op-2", "op-4"))
        assert status == 422 and "already replaced" in body["issue"][0]["diagnostics"]
        fhir.update({**fhir.read("Patient", "op-4"), "active": False})
        status, body = call(merge_parameters("op-4", "op-1"))   # an inactive source
        assert status == 422 and "inactive" in body["issue"][0]["diagnostics"]
        status, body = call({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient", "valueReference": {"reference": "Patient/op-1"}},
            {"name": "target-patient", "valueReference": {"reference": "Patient/op-4"}}]})
        assert status == 422 and "inactive" in body["issue"][0]["diagnostics"]   # an inactive target
        status, body = call(merge_parameters("op-1", "no-such-identifier"))
        assert status == 422
        status, _ = call(merge_parameters("op-1", "op-3"), headers={})
        assert status == 401


def test_unmerge_and_force_merge(product):
    [job] = product.json("jobs", "--patient", "free-2")
    undone = product.json("unmerge", job["job_id"])
    assert undone["patients"] == 2 and not undone["conflicts"]
    assert product.json("jobs", "--patient", "free-2", "--status", "unmerged")[0]["job_id"] == job["job_id"]
    time.sleep(5)   # time for the live fix to (wrongly) act on the restored references, if it would
    with FhirClient(product.fhir_url) as fhir:
        for oid in ("obs-free-2", "late-obs"):   # merged, then fixed live: both restored, and left so
            assert fhir.read("Observation", oid)["subject"]["reference"] == "Patient/free-2"
    published = product.json("force-merge", "-", "--reason", "test", "--by", "ops@test", input=f"{NIK}\n")
    assert published["message_id"] and NIK not in json.dumps(published)


def test_service_errors_are_one_line(product):
    # A project whose topics do not exist (the 300-line NotFound traceback).
    missing = product.dedup("--project", "no-topics-here", "force-merge", "-", "--reason", "x", "--by", "y",
                            input=f"{NIK}\n", expect=4)
    assert len(missing.stderr.strip().splitlines()) == 1 and "does not exist" in missing.stderr
    assert NIK not in missing.stderr + missing.stdout
    unknown_job = product.dedup("status", "mr-no-such-job", expect=3)
    assert unknown_job.stderr.strip() == "error: no merge job mr-no-such-job"
    assert product.dedup("links", "no-such-patient", expect=3).stderr.count("\n") == 1


def test_ctrl_c_stops_everything(product):
    pids = list(product.state["pids"].values())
    assert all(not gone(pid) for pid in pids)
    product.process.send_signal(signal.SIGINT)
    assert product.process.wait(timeout=60) == 0
    assert all(gone(pid) for pid in pids)
    assert not (product.state_dir / "env").exists() and not (product.state_dir / "state.json").exists()


def test_detached_up_and_down(tmp_path):
    up = subprocess.run([sys.executable, "-m", "ops", "up", "--detach", "--json"], cwd=REPO, capture_output=True,
                        text=True, env=clean_env(DEDUP_STACK_DIR=str(tmp_path)), timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert all(row["ok"] for row in json.loads(up.stdout)["components"])
    state = json.loads((tmp_path / "state.json").read_text())
    assert len(state["pids"]) == 3 + len(json.loads((REPO / "functions" / "functions.json").read_text())["functions"])
    down = subprocess.run([sys.executable, "-m", "ops", "down", "--json"], cwd=REPO, capture_output=True, text=True,
                          env=clean_env(DEDUP_STACK_DIR=str(tmp_path)), timeout=120)
    assert down.returncode == 0 and json.loads(down.stdout) == {"was_running": True, "running": False}
    assert all(gone(pid) for pid in [state["supervisor_pid"], *state["pids"].values()])
