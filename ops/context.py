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
    settings = root.obj
    if not root.meta.get("preflight_done"):
        top = ctx
        while top.parent is not None and top.parent is not root:
            top = top.parent
        preflight(top.info_name or "", settings)
        root.meta["preflight_done"] = True
    return settings


def print_mapping(title: str, mapping: dict) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key, value in mapping.items():
        table.add_row(str(key), value if isinstance(value, str) else json.dumps(value, default=str))
    console.print(table)
