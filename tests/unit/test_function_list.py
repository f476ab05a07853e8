"""functions/functions.json is the one list of deployed functions: functions/main.py exports exactly its
entry points, docs/DESIGN.md's table is it written out, and the local pipeline runs exactly it
(infra/modules/district reading it is checked in tests/infra)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import functions.main
from shared.config import Settings
from tools.runtime.pipeline import FUNCTIONS, FUNCTIONS_FILE, FunctionSpec, load_function_specs

REPO = Path(__file__).resolve().parents[2]
LISTED: list[dict] = json.loads((REPO / "functions" / "functions.json").read_text())["functions"]


def test_the_list_is_well_formed():
    assert FUNCTIONS_FILE == REPO / "functions" / "functions.json"
    assert LISTED
    for entry in LISTED:
        assert set(entry) == {"name", "entry_point", "trigger"}, entry
        assert re.fullmatch(r"[a-z][a-z-]*[a-z]", entry["name"]), entry
        assert len(f"dedup-{entry['name']}-push") <= 30  # service account ids (infra/modules/pubsub_function)
        assert entry["entry_point"].isidentifier(), entry
    for key in ("name", "entry_point"):
        values = [entry[key] for entry in LISTED]
        assert len(values) == len(set(values)), f"repeated {key}"


def test_every_trigger_is_a_settings_topic_or_http():
    topics = {field.default: name for name, field in Settings.model_fields.items() if name.startswith("topic_")}
    triggers = [entry["trigger"] for entry in LISTED if entry["trigger"] != "http"]
    assert set(triggers) <= set(topics), sorted(set(triggers) - set(topics))
    assert len(triggers) == len(set(triggers)), "one function per trigger topic"


def test_main_exports_exactly_the_listed_entry_points():
    listed = {entry["entry_point"] for entry in LISTED}
    tree = ast.parse((REPO / "functions" / "main.py").read_text())
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert imported | defined == listed
    public = {name for name, value in vars(functions.main).items() if not name.startswith("_") and callable(value)}
    assert public == listed


def test_design_table_is_the_list_written_out():
    text = (REPO / "docs" / "DESIGN.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)` \| (.+?) \| `functions\.main\.(\w+)` \|$", text, flags=re.MULTILINE)
    table = [(name, "http" if trigger.startswith("HTTP") else trigger.strip("`"), entry)
             for name, trigger, entry in rows]
    assert table == [(e["name"], e["trigger"], e["entry_point"]) for e in LISTED]


def test_local_pipeline_runs_the_list():
    assert FUNCTIONS == load_function_specs()
    assert [spec.name for spec in FUNCTIONS] == [entry["name"] for entry in LISTED]
    settings = Settings()
    for spec, entry in zip(FUNCTIONS, LISTED):
        assert spec.target == entry["entry_point"]
        if entry["trigger"] == "http":
            assert (spec.signature, spec.trigger_topic_field) == ("http", None)
        else:
            assert spec.signature == "cloudevent"
            assert getattr(settings, spec.trigger_topic_field) == entry["trigger"]


def test_pipeline_rejects_a_trigger_that_is_no_settings_topic(tmp_path):
    bad = tmp_path / "functions.json"
    bad.write_text(json.dumps({"functions": [{"name": "x", "entry_point": "x", "trigger": "no-such-topic"}]}))
    with pytest.raises(ValueError, match="topic_no_such_topic"):
        load_function_specs(bad)
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"functions": [{"name": "r", "entry_point": "r", "trigger": "http"}]}))
    assert load_function_specs(good) == (FunctionSpec("r", "r", "http", None),)
