"""`dedup up`, `dedup down` and `dedup status` (without a job id): the whole product locally as a
standing service, from a checkout of this repository.

`up` runs ``tools.runtime.stack`` (emulators, FHIR server) with ``Product`` on top (every function of
functions/functions.json fed by its topic, the FHIR Subscriptions calling the relay, the review
workbench when the checkout has it): in this terminal until Ctrl-C, or ``--detach``ed with its state
under ``.stack/`` (``.stack/env`` is what every other command reads). The main job (`make demo`) and
the integration tests start the same ``LocalStack`` and ``LocalPipeline``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ops.errors import OpsError

console = Console()


def up(
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background (state in .stack/); "
                                "default: in this terminal until Ctrl-C"),
    functions: bool = typer.Option(True, help="Also every function, the FHIR Subscriptions and the workbench "
                                   "(--no-functions: emulators and FHIR server only)"),
    project_id: str = typer.Option("dedup-local", help="DEDUP_PROJECT_ID of the local stack"),
    as_json: bool = typer.Option(False, "--json", help="With --detach: the components as JSON once ready"),
):
    """Start the whole product locally: emulators, FHIR server, topics, every function, the FHIR
    Subscriptions, the review workbench. Every other command then works against it."""
    from tools.runtime import product, stack

    if not functions:
        stack.up(foreground=not detach, project_id=project_id, functions=False)
    elif detach:
        # With --json the start-up log goes to stderr, so stdout is one JSON document.
        with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):
            product.up_detached(project_id)
    if detach and as_json:
        raise typer.Exit(stack_status(True))
    else:
        existing = stack.read_state()
        if existing:
            raise OpsError(f"a local stack is running already (supervisor pid {existing['supervisor_pid']})",
                           "`dedup down` first, or use it: `dedup status`")
        product.run_foreground(project_id)


def down(as_json: bool = typer.Option(False, "--json")):
    """Stop what `dedup up --detach` started (a foreground `up` stops with Ctrl-C)."""
    from tools.runtime import stack

    running = stack.read_state() is not None
    if as_json:
        with contextlib.redirect_stdout(io.StringIO()):
            stack.down()
        console.print_json(json.dumps({"was_running": running, "running": stack.read_state() is not None}))
    else:
        stack.down()


def stack_status(as_json: bool, env_file: Path | None = None) -> int:
    """Prints the running stack's components (the one whose env file the CLI reads, else this
    checkout's); the exit code: 0 all answer, 1 some do not, 3 none running."""
    from tools.runtime.stack import ENV_FILE, component_health, read_state

    state = read_state(env_file.parent if env_file else None)
    ENV_FILE = env_file or ENV_FILE  # noqa: N806 - the file this status is about
    if state is None:
        if as_json:
            console.print_json(json.dumps({"running": False}))
        else:
            console.print("no local stack running (start it with `dedup up` or `dedup up --detach`)")
        return 3
    rows = component_health(state)
    if as_json:
        console.print_json(json.dumps({"running": True, "env_file": str(ENV_FILE), "components": rows,
                                       "workbench_url": state.get("workbench_url")}))
    else:
        table = Table(title=f"local stack (environment: {ENV_FILE})")
        for column in ("component", "pid", "port", "answers"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(row["name"], str(row["pid"]), str(row["port"]),
                          "[green]yes" if row["ok"] else "[red]NO")
        console.print(table)
        if state.get("workbench_url"):
            console.print(f"review workbench: {state['workbench_url']}")
    return 0 if all(row["ok"] for row in rows) else 1


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
