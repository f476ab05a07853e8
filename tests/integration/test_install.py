"""`pip install .` into a fresh virtualenv gives a working `dedup` command, outside the repository.

Quick: the new virtualenv sees the already installed dependencies through a .pth file (what
`--system-site-packages` does for a system interpreter) and pip installs the project itself with
`--no-deps` (its isolated build fetches only the build backend, setuptools, from the package index).
The dependency list is checked against the requirements files it is read from. A full
`pip install .` with every dependency from the index is what the README shows (about 45 s)."""

from __future__ import annotations

import json
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> set[str]:
    return {line.split("#")[0].strip() for line in path.read_text().splitlines()
            if line.split("#")[0].strip() and not line.startswith("-r")}


def _includes(path: Path) -> set[str]:
    """Every requirements file ``path`` pulls in with ``-r``, transitively."""
    found: set[str] = set()
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            name = line[3:].strip()
            found |= {name} | _includes(path.with_name(name))
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "shared-dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(REPO)], check=True, timeout=300,
                   cwd=tmp_path_factory.mktemp("build"))
    return root


def test_dedup_runs_outside_the_repository(installed, tmp_path):
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    version = subprocess.run(["dedup", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("dedup 0.1.0"), version.stderr
    status = subprocess.run(["dedup", "status", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert status.returncode == 3 and json.loads(status.stdout) == {"running": False}
    module = subprocess.run([installed / "bin" / "python", "-m", "ops", "--version"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout == version.stdout


def test_the_package_carries_its_data_files(installed):
    python = installed / "bin" / "python"
    code = ("import functions, shared.fhir.compartment as c, pathlib;"
            "from shared.linkage.model import default_model;"   # the matching model shipped as a JSON file
            "print(pathlib.Path(functions.__file__).with_name('functions.json').exists(), c.__file__,"
            " bool(default_model().version))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout
    exists, location, model = out.split()
    assert exists == "True" and str(REPO) not in location   # the installed copy, not the checkout
    assert model == "True"


def test_dependencies_are_the_requirements_files():
    metadata = subprocess.run([sys.executable, "-c", "import setuptools.config.pyprojecttoml as p;"
                               "import json; c = p.read_configuration('pyproject.toml');"
                               "print(json.dumps(c['tool']['setuptools']['dynamic']))"],
                              cwd=REPO, capture_output=True, text=True, check=True).stdout
    files = json.loads(metadata)["dependencies"]["file"]
    assert files == ["requirements.txt", "requirements-ops.txt"]
    # The development environment includes both (requirements.txt through the workbench's file).
    assert {"requirements.txt", "requirements-ops.txt"} <= _includes(REPO / "requirements-dev.txt")
    assert not _pins(REPO / "requirements-ops.txt") & _pins(REPO / "requirements-dev.txt")   # one source each
