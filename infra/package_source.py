"""Package the Cloud Functions' source as docs/DESIGN.md ("Functions") lays it out: main.py (a copy of
functions/main.py) at the root, where Cloud Functions loads it, the functions/ and shared/ packages,
and requirements.txt.

The zip is byte-for-byte reproducible (sorted entries, fixed timestamps), and its object name carries
its content hash, so Terraform redeploys the functions only when the source changed.

    python infra/package_source.py --out build/   # prints the object name, e.g. dedup-src-1a2b....zip

Standard library only: Cloud Build runs it before any dependency is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", "tests"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def source_files(repo_root: Path = REPO_ROOT) -> dict[str, Path]:
    """Archive name -> file on disk, for everything that is deployed."""
    files: dict[str, Path] = {"main.py": repo_root / "functions" / "main.py"}
    for package in ("functions", "shared"):
        for path in sorted((repo_root / package).rglob("*")):
            if _deployable(path, repo_root):
                files[path.relative_to(repo_root).as_posix()] = path
    files["requirements.txt"] = repo_root / "requirements.txt"
    return files


def _deployable(path: Path, base: Path) -> bool:
    relative = path.relative_to(base)
    return (
        path.is_file()
        and not _SKIPPED_PARTS.intersection(relative.parts)
        and path.suffix not in _SKIPPED_SUFFIXES
    )


def build_zip(repo_root: Path = REPO_ROOT) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(source_files(repo_root).items()):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def object_name(content: bytes) -> str:
    return f"dedup-src-{hashlib.sha256(content).hexdigest()[:20]}.zip"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build", help="directory for the zip")
    args = parser.parse_args(argv)
    content = build_zip()
    name = object_name(content)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / name).write_bytes(content)
    print(name)


if __name__ == "__main__":
    main()
