"""The Dataproc Serverless module (infra/modules/backfill_spark) and the code it runs, held together: its
arguments are options the ops CLI's backfill has, with an engine it accepts; the environment it sets is
read by the code; the batch runs only when asked; its account holds what the backfill touches (the model
bucket too: the backfill scores and decides with the district's current model)."""

from __future__ import annotations

from pathlib import Path

import typer

from ops.cli import app
from tests.infra.conftest import INFRA_DIR, REPO_ROOT


def _backfill_options() -> dict[str, object]:
    command = typer.main.get_command(app).commands["backfill"]
    return {opt: param for param in command.params for opt in param.opts}


def _module(modules):
    return modules["backfill_spark"]


def test_the_batch_runs_the_ops_backfill_with_options_it_has(modules):
    args = _module(modules).locals["backfill_args"]
    assert args[0] == "backfill"
    options = _backfill_options()
    flags = [arg for arg in args[1:] if arg.startswith("--")]
    assert flags and all(flag in options for flag in flags), set(flags) - set(options)
    engine = args[args.index("--engine") + 1]
    assert engine == "spark"
    assert "--spark-master" not in args   # inside a Dataproc batch the session is the batch's own
    assert "--work-dir" in args
    # One deciding process per driver core, the cores Spark gives the driver.
    assert args[args.index("--decide-workers") + 1] == "${tostring(var.driver_cores)}"
    properties = str(_module(modules).resources_of("google_dataproc_batch")["backfill"]["runtime_config"])
    assert '"spark.driver.cores" = tostring(var.driver_cores)' in properties


def test_the_main_file_and_the_environment_it_sets_are_read_by_the_code(modules):
    module = _module(modules)
    batch = str(module.resources_of("google_dataproc_batch")["backfill"])
    assert "backfill_main.py" in batch and (INFRA_DIR / "spark" / "backfill_main.py").exists()
    env = str(module.locals["driver_env"])
    for name, reader in (("DEDUP_SPARK_CHECKPOINT_DIR", "shared/adapters/splink_scoring.py"),
                         ("DEDUP_NIK_HASH_KEY_SECRET_VERSION", "infra/spark/backfill_main.py")):
        assert name in env and name in (REPO_ROOT / reader).read_text()
    assert "var.settings" in env
    assert "spark.dataproc.driverEnv." in batch


def test_the_batch_runs_only_when_asked_and_in_the_districts_subnet(modules):
    module = _module(modules)
    batch = module.resources_of("google_dataproc_batch")["backfill"]
    assert "var.run_batch ? 1 : 0" in str(batch["count"])
    assert module.variables["run_batch"]["default"] is False
    text = str(batch)
    for wired in ("var.subnetwork_uri", "var.kms_key", "google_service_account.backfill_spark.email",
                  "var.container_image"):
        assert wired in text


def test_the_batch_account_holds_only_what_the_backfill_touches(modules):
    module = _module(modules)
    grants = {name: str(body) for named in module.resources.values() for name, body in named.items()
              if "google_service_account.backfill_spark.member" in str(body)}
    assert set(grants) == {"backfill_spark_dataproc_worker", "backfill_spark_code", "backfill_spark_firestore",
                           "backfill_spark_publishes_merge_requests", "backfill_spark_reads_fhir",
                           "backfill_spark_nik_key", "backfill_spark_reads_models"}
    assert "condition" in grants["backfill_spark_firestore"]
    assert "var.merge_requests_topic" in grants["backfill_spark_publishes_merge_requests"]
    assert "var.model_bucket" in grants["backfill_spark_reads_models"]
    assert "objectViewer" in grants["backfill_spark_reads_models"]   # reads the current model, writes none


def test_the_model_the_batch_reads_is_the_one_the_settings_name(modules):
    # The backfill loads the current model from DEDUP_MODEL_STORE (shared/config.py's model_store): the
    # district gives it in its settings, the same bucket the batch's account may read.
    from shared.config import Settings

    assert "model_store" in Settings.model_fields
    district = modules["district"]
    assert 'DEDUP_MODEL_STORE = "gs://${local.model_bucket}"' in str(district.locals["settings"])
    assert str(district.locals["model_bucket"]) == "${var.project_id}-dedup-models"
    assert Path(INFRA_DIR / "modules" / "backfill_spark" / "main.tf").read_text().startswith("# --- the batch")
