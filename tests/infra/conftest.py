"""Fixtures for the offline infrastructure checks: the parsed Terraform of infra/, and checkov.

checkov pins ``packaging<24`` while pytest needs ``packaging>=24``, so it cannot live in .venv; it gets
its own virtualenv, ``.venv-infra``, created here on first use from infra/requirements-checkov.txt
(a stamp file records the pin, so a changed pin reinstalls).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
MODULES_DIR = INFRA_DIR / "modules"
ENVS_DIR = INFRA_DIR / "envs"
CHECKOV_REQUIREMENTS = INFRA_DIR / "requirements-checkov.txt"
INFRA_VENV = REPO_ROOT / ".venv-infra"

_HCL_OPTIONS = hcl2.SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


@dataclass
class TerraformDir:
    """The blocks of every .tf file of one directory (one Terraform module)."""

    path: Path
    resources: dict[str, dict[str, dict]] = field(default_factory=dict)  # type -> name -> body
    modules: dict[str, dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, object] = field(default_factory=dict)
    terraform: list[dict] = field(default_factory=list)

    def resources_of(self, type_: str) -> dict[str, dict]:
        return self.resources.get(type_, {})


def parse_dir(path: Path) -> TerraformDir:
    parsed = TerraformDir(path)
    for tf_file in sorted(path.glob("*.tf")):
        with tf_file.open() as handle:
            document = hcl2.load(handle, serialization_options=_HCL_OPTIONS)
        for block in document.get("resource", []):
            for type_, named in block.items():
                parsed.resources.setdefault(type_, {}).update(named)
        for block in document.get("module", []):
            parsed.modules.update(block)
        for block in document.get("variable", []):
            parsed.variables.update(block)
        for block in document.get("locals", []):
            parsed.locals.update(block)
        parsed.terraform.extend(document.get("terraform", []))
    return parsed


@pytest.fixture(scope="session")
def modules() -> dict[str, TerraformDir]:
    return {path.name: parse_dir(path) for path in sorted(MODULES_DIR.iterdir()) if path.is_dir()}


@pytest.fixture(scope="session")
def envs() -> dict[str, TerraformDir]:
    return {path.name: parse_dir(path) for path in sorted(ENVS_DIR.iterdir()) if path.is_dir()}


@pytest.fixture(scope="session")
def checkov() -> Path:
    """Path of the checkov executable in .venv-infra, installing it when missing or outdated."""
    executable = INFRA_VENV / "bin" / "checkov"
    pin = CHECKOV_REQUIREMENTS.read_text()
    stamp = INFRA_VENV / ".installed"
    if not executable.exists() or not stamp.exists() or stamp.read_text() != pin:
        if not (INFRA_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(INFRA_VENV)], check=True)
        subprocess.run(
            [str(INFRA_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "-r", str(CHECKOV_REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(pin)
    return executable
