"""What every command module shares: the settings of this run (after the preflight checks its command
needs) and the key/value table printer."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from shared.config import Settings

console = Console()


def settings_of(ctx: typer.Context) -> Settings:
    """The settings, after the checks this command needs (``ops.preflight``), once per command."""
    from ops.preflight import preflight

    root = ctx.find_root()
    if "settings" not in root.meta:
        root.meta["settings"] = _build_settings(root.obj or {})
    settings = root.meta["settings"]
    if not root.meta.get("preflight_done"):
        top = ctx
        while top.parent is not None and top.parent is not root:
            top = top.parent
        preflight(top.info_name or "", settings)
        root.meta["preflight_done"] = True
    return settings


def _build_settings(overrides: dict) -> Settings:
    """``Settings`` from the environment; a refused configuration is a usage problem in one line (the
    field and pydantic's reason, never the value: it may be a key or a token)."""
    from pydantic import ValidationError

    from ops.errors import UsageProblem

    try:
        return Settings(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc") or ()) or "settings"
        raise UsageProblem(f"configuration refused: {where}: {first.get('msg')}",
                           "check the DEDUP_* variables (README, \"Running ops against a real district\")") from None


def print_mapping(title: str, mapping: dict) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in mapping.items():
        table.add_row(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(table)
