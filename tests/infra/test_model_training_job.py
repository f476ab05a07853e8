"""The model bucket, the scheduled retraining job and the code they serve, held together
(infra/modules/district/model_store.tf): the job runs `dedup model train` with options that exist and
without --promote unless a variable says so; the bucket is the store the code reads (DEDUP_MODEL_STORE),
versioned, with the district's key, nothing deleting versions; the job's account can add versions but
not replace them nor move the pointer; every function whose code decides with the model can read it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

from ops.cli import app
from ops.model import train
from shared.adapters.model_store_gcs import POINTER, parse_bucket_url
from shared.config import Settings

REPO = Path(__file__).resolve().parents[2]


def _command(modules) -> str:
    return str(modules["district"].locals["model_train_command"])


def _flags(command) -> set[str]:
    flags = set()
    for param in command.params:
        flags.update(o for o in param.opts if o.startswith("--"))
    return flags


def test_the_job_runs_dedup_model_train_with_options_it_has(modules):
    command = _command(modules)
    base = re.search(r"concat\(\[([^\]]*)\]", command).group(1)
    assert [part.strip().strip('"') for part in base.split(",")] == [
        "python", "-m", "ops", "model", "train", "--by", "scheduled-retraining"]
    cli = typer.main.get_command(app)
    model_train = cli.commands["model"].commands["train"]
    assert model_train.help.startswith(train.__doc__.split(".")[0])   # ops/model.py's train
    assert set(re.findall(r'"(--[a-z-]+)"', command)) <= _flags(model_train)
    # Retrain and report; a person promotes, unless the district chose otherwise.
    assert 'var.model_retrain_promote ? ["--promote"] : []' in command
    assert modules["district"].variables["model_retrain_promote"]["default"] is False
    assert 'var.patient_export_bucket == null ? [] : ["--ndjson", local.export_mount]' in command
    job = str(modules["district"].modules["model_training_job"])   # the ops_job module's inputs
    assert "'command': '${local.model_train_command}'" in job and "local.export_volumes" in job
    assert "local.settings" in job and "merge(local.nik_key_env, local.fhir_token_env)" in job


def test_the_bucket_is_the_store_the_code_reads(modules):
    district = modules["district"]
    assert "DEDUP_MODEL_STORE = \"gs://${local.model_bucket}\"" in (REPO / "infra/modules/district/main.tf").read_text()
    assert district.locals["model_bucket"] == "${var.project_id}-dedup-models"
    # The variable is the setting the bootstrap builds the store from, and a district's value is accepted.
    assert f"DEDUP_{'model_store'.upper()}" == "DEDUP_MODEL_STORE" and "model_store" in Settings.model_fields
    store = Settings(environment="local", model_store="gs://kabupaten-sleman-dedup-models").model_store
    assert parse_bucket_url(store) == ("kabupaten-sleman-dedup-models", "")
    bucket = district.resources_of("google_storage_bucket")["models"]
    assert bucket["versioning"] == [{"enabled": True}] and "lifecycle_rule" not in bucket
    assert bucket["encryption"] == [{"default_kms_key_name": "${google_kms_crypto_key.models.id}"}]
    key = district.resources_of("google_kms_crypto_key")["models"]
    assert key["key_ring"] == "${google_kms_key_ring.pubsub.id}"   # the district's key ring
    agent = district.resources_of("google_kms_crypto_key_iam_member")["models_storage_agent"]
    assert "google_storage_project_service_account.gcs" in agent["member"]


def _grants_to(district, member: str) -> dict[str, dict]:
    return {name: body for type_, named in district.resources.items() for name, body in named.items()
            if member in str(body.get("member", "")) and type_ != "google_cloud_run_v2_job"}


def test_the_jobs_account_adds_versions_but_never_replaces_one(modules):
    district = modules["district"]
    grants = _grants_to(district, "google_service_account.model_training.member")
    assert set(grants) == {"training_adds_models", "training_promotes", "training_reads_fhir",
                           "training_reads_export", "training_secret"}
    adds = grants["training_adds_models"]
    assert adds["for_each"] == '${toset(["roles/storage.objectCreator", "roles/storage.objectViewer"])}'
    assert adds["bucket"] == "${google_storage_bucket.models.name}"
    # Replacing an object needs delete, which objectCreator lacks; only an opted-in promote may replace the
    # pointer object, and nothing else.
    promote = grants["training_promotes"]
    assert promote["count"] == "${var.model_retrain_promote ? 1 : 0}"
    assert promote["condition"][0]["expression"].endswith(f'/objects/{POINTER}"')
    assert grants["training_reads_fhir"]["role"] == "${local.reader}"
    assert "var.patient_export_bucket == null" in grants["training_reads_fhir"]["count"]
    assert not any("datastore" in str(g) or "pubsub" in str(g) for g in grants.values())


def _model_builders() -> set[str]:
    """The composition root's builders that (transitively) build the model that decides."""
    tree = ast.parse((REPO / "shared/bootstrap.py").read_text())
    uses = {node.name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            for node in tree.body if isinstance(node, ast.FunctionDef)}
    builders = {"current_model"}
    while True:
        more = {name for name, names in uses.items() if names & builders} - builders
        if not more:
            return builders
        builders |= more


def _functions_deciding() -> set[str]:
    import json

    builders = _model_builders()
    main = ast.parse((REPO / "functions/main.py").read_text())
    module_of = {alias.name: node.module for node in main.body if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
    deciding = set()
    for function in json.loads((REPO / "functions/functions.json").read_text())["functions"]:
        module = ast.parse((REPO / (module_of[function["entry_point"]].replace(".", "/") + ".py")).read_text())
        imported = {alias.name for node in ast.walk(module) if isinstance(node, ast.ImportFrom)
                    and node.module == "shared.bootstrap" for alias in node.names}
        if imported & builders:
            deciding.add(function["name"])
    return deciding


def test_everything_that_decides_can_read_the_models(modules):
    district = modules["district"]
    assert {"matching_service", "batch_backfill", "review_service"} <= _model_builders()
    readers = district.locals["model_readers"]
    assert readers.startswith("${toset([") and set(re.findall(r'"([a-z-]+)"', readers)) == _functions_deciding()
    grant = district.resources_of("google_storage_bucket_iam_member")["function_reads_models"]
    assert grant["for_each"] == "${local.model_readers}" and grant["role"] == "roles/storage.objectViewer"
    for name in ("backfill_reads_models", "workbench_reads_models"):
        body = district.resources_of("google_storage_bucket_iam_member")[name]
        assert body["role"] == "roles/storage.objectViewer" and body["bucket"] == "${google_storage_bucket.models.name}"


def test_the_schedule_starts_the_job_as_an_account_that_may_only_run_it(modules):
    district = modules["district"]
    schedule = district.resources_of("google_cloud_scheduler_job")["model_retraining"]
    assert schedule["schedule"] == "${var.model_retrain_schedule}" and district.variables[
        "model_retrain_schedule"]["default"]
    target = schedule["http_target"][0]
    assert target["uri"].endswith("/jobs/${module.model_training_job[0].name}:run")
    assert target["oauth_token"][0]["service_account_email"] == "${google_service_account.model_scheduler.email}"
    assert set(_grants_to(district, "google_service_account.model_scheduler.member")) == {"scheduler_runs_training"}
