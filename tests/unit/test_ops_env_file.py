"""The ops CLI's --env-file / DEDUP_ENV_FILE: a dotenv file (such as the local stack's .stack/env) fills
the variables the environment does not set; it never overrides one that is set."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from ops.cli import app

KEYS = ("DEDUP_PROJECT_ID", "DEDUP_FHIR_BASE_URL", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "DEDUP_ENV_FILE")
runner = CliRunner()


@pytest.fixture
def clean_env(monkeypatch):
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)  # restored (or removed again) after the test
    return monkeypatch


@pytest.fixture
def stack_env(tmp_path):
    path = tmp_path / "env"
    path.write_text("export FIRESTORE_EMULATOR_HOST=127.0.0.1:8701\nexport PUBSUB_EMULATOR_HOST=127.0.0.1:8702\n"
                    "export DEDUP_FHIR_BASE_URL='http://127.0.0.1:8703/fhir'\nexport DEDUP_PROJECT_ID=from-file\n")
    return path


def test_env_file_fills_missing_variables(clean_env, stack_env):
    clean_env.setenv("DEDUP_PROJECT_ID", "from-environment")
    result = runner.invoke(app, ["--env-file", str(stack_env), "review", "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == "127.0.0.1:8701"
    assert os.environ["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:8702"
    assert os.environ["DEDUP_FHIR_BASE_URL"] == "http://127.0.0.1:8703/fhir"
    assert os.environ["DEDUP_PROJECT_ID"] == "from-environment"  # set before: kept


def test_dedup_env_file_variable_names_the_file(clean_env, stack_env):
    clean_env.setenv("DEDUP_ENV_FILE", str(stack_env))
    result = runner.invoke(app, ["review", "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert os.environ["DEDUP_PROJECT_ID"] == "from-file"


def test_without_env_file_nothing_is_read(clean_env, stack_env, monkeypatch):
    monkeypatch.chdir(stack_env.parent)
    result = runner.invoke(app, ["review", "--help"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "DEDUP_PROJECT_ID" not in os.environ and "FIRESTORE_EMULATOR_HOST" not in os.environ


def test_missing_env_file_is_an_error(clean_env, tmp_path):
    result = runner.invoke(app, ["--env-file", str(tmp_path / "nope"), "review", "--help"])
    assert result.exit_code == 2  # a usage error, before any command runs
    assert "--env-file" in result.output
