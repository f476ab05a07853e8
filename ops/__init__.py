"""The ops command-line tool: `dedup --help` (installed by `pip install .`), or `python -m ops --help`."""


def version() -> str:
    """The installed distribution's version, or the source tree's when run from a checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("patient-dedup")
    except PackageNotFoundError:
        return "0.1.0 (source checkout)"
