"""`dedup model` without a stack: train on an NDJSON export into a directory store, list, promote, and the
one-line errors (no store, an unknown version, a name that is not a version, too few patients). The same
commands against the FHIR server and the running functions: tests/integration/test_model_training.py."""

from __future__ import annotations

import json

import pytest

from ops.cli import run
from shared.config import Settings
from shared.linkage.model import default_model
from tools.dataset.generate import Params, generate


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("export")
    generate(directory, Params(patients=300, seed=17, resources_per_patient=0.0), Settings())
    return directory


@pytest.fixture
def dedup(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEDUP_MODEL_STORE", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)   # no running stack's .stack/env is found from here

    def invoke(*args: str) -> tuple[int, str, str]:
        code = run(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


def test_train_list_promote_on_an_export(dedup, export):
    code, out, err = dedup("model", "train", "--ndjson", str(export), "--by", "ops@district", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["patients"] == 300 and trained["promoted"] is False and trained["current"] is None
    assert trained["comparison"]["model_version"] == default_model().version
    assert sum(trained["comparison"]["bands"].values()) == trained["comparison"]["pairs"] > 0
    assert all(set(row) == {"comparison", "level", "m", "u", "match_weight"} for row in trained["parameters"])

    code, out, _ = dedup("model", "list", "--json")
    [row] = json.loads(out)
    assert (row["version"], row["current"], row["created_by"], row["patients"]) == (
        trained["version"], False, "ops@district", 300)
    assert row["pairs_changing_band"] == trained["comparison"]["changed"]

    code, out, _ = dedup("model", "promote", trained["version"], "--by", "lead@district")
    assert code == 0 and f"current model: {trained['version']} (was the shipped default)" in " ".join(out.split())
    code, out, _ = dedup("model", "list")
    assert code == 0 and trained["version"] in out and "*" in out


def test_errors_are_one_line_with_the_right_exit_code(dedup, export, tmp_path, monkeypatch):
    code, _, err = dedup("model", "promote", "20990101-000000-000000000000", "--by", "x")
    assert code == 3 and err.startswith("error: no model version 20990101-000000-000000000000")
    code, _, err = dedup("model", "promote", "../current", "--by", "x")
    assert code == 2 and "is not a model version name" in err and len(err.strip().splitlines()) == 1
    few = tmp_path / "few"
    few.mkdir()
    lines = (export / "bulk" / "Patient.ndjson").read_text().splitlines()[:50]
    (few / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    code, _, err = dedup("model", "train", "--ndjson", str(few), "--by", "x")
    assert code == 2 and "50 patients read" in err and "too few to train" in err
    monkeypatch.delenv("DEDUP_MODEL_STORE")
    code, _, err = dedup("model", "train", "--ndjson", str(export), "--by", "x")
    assert code == 2 and err.startswith("error: no model store is configured")
