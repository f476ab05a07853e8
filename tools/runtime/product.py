"""The whole product on the local stack: what `dedup up` runs as a standing service.

    python -m tools.runtime.product up --foreground    # what `dedup up` runs (Ctrl-C stops everything)

``Product`` starts, on a running ``LocalStack``, every function of functions/functions.json fed by its
topic, the FHIR Subscriptions calling the relay (``LocalPipeline``, the same the main job and the
tests start) and the review workbench when the checkout has it. The stack's supervisor
(``tools.runtime.stack``) keeps the state under ``.stack/``; `dedup up --detach` starts this module
in the background through it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from tools.runtime.stack import DEFAULT_PROJECT_ID, STATE_DIR, LocalStack, ManagedProcess
from tools.runtime.stack import _run_foreground as run_stack_foreground
from tools.runtime.stack import up as stack_up


@dataclass
class Product:
    """The whole product on a running stack: every function of functions/functions.json fed by its
    topic, the FHIR Subscriptions calling the relay, and the review workbench when this checkout has
    it. What `dedup up` runs as a standing service; the main job and the tests start the same
    ``LocalPipeline`` on their own stacks."""

    stack: LocalStack
    log_dir: Path
    pipeline: object | None = None
    workbench: object | None = None
    workbench_url: str | None = None

    def start(self) -> Product:
        from shared.config import Settings
        from tools.runtime.pipeline import LocalPipeline

        env = self.stack.env | self.model_env
        # The functions and this process talk to the emulators (the workbench runs in this process).
        os.environ.update({k: env[k] for k in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")})
        settings = Settings(project_id=env["DEDUP_PROJECT_ID"], fhir_base_url=env["DEDUP_FHIR_BASE_URL"],
                            model_store=env["DEDUP_MODEL_STORE"])
        self.pipeline = LocalPipeline(settings, env, self.log_dir).start()
        self.workbench, self.workbench_url = _start_workbench(settings)
        return self

    def stop(self) -> None:
        if self.workbench is not None:
            self.workbench.stop()
        if self.pipeline is not None:
            self.pipeline.stop()

    @property
    def model_env(self) -> dict[str, str]:
        """The local model store (docs/operations.md "The matching model"): a directory beside the stack's
        state, kept across `dedup up` runs like a district's bucket (`dedup model train` writes there, the
        functions load its current model)."""
        return {"DEDUP_MODEL_STORE": str(STATE_DIR / "models")}

    @property
    def env(self) -> dict[str, str]:
        """What ops commands and tests need besides the stack's own settings: the relay's (and
        Patient/$merge's) shared secret of this run, the workbench's address, the model store."""
        extra = {"DEDUP_RELAY_SHARED_SECRET": self.pipeline.relay_secret} if self.pipeline else {}
        return {**extra, **self.model_env,
                **({"DEDUP_WORKBENCH_URL": self.workbench_url} if self.workbench_url else {})}

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        return {name: f.process for name, f in (self.pipeline.functions.items() if self.pipeline else ())}

    def alive(self) -> bool:
        return all(proc.alive() for proc in self.processes.values())


def _start_workbench(settings) -> tuple[object | None, str | None]:
    """The review workbench in a thread of this process (``tools.runtime.workbench.serve``, its
    development sign-in: the emulators are in use here). An optional part: the rest of the product runs
    without it."""
    from tools.runtime.workbench import serve

    try:
        running = serve(settings)
    except Exception as error:  # noqa: BLE001 - reported in one line, the product goes on
        print(f"review workbench not started: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return None, None
    return running, running.url + "/"


def run_foreground(project_id: str = DEFAULT_PROJECT_ID) -> None:
    """The stack and the product in this process until SIGINT/SIGTERM; state and env under .stack/."""
    run_stack_foreground(project_id, lambda stack: Product(stack, STATE_DIR / "run" / "functions").start())


def up_detached(project_id: str = DEFAULT_PROJECT_ID) -> None:
    """The same in the background (the stack's supervisor runs this module); returns once ready."""
    stack_up(foreground=False, project_id=project_id, functions=True)


app = typer.Typer(add_completion=False, help="The whole product on the local stack.")


@app.callback()
def main() -> None:
    """(`up` is the one command; the group keeps `python -m tools.runtime.product up` like the stack's.)"""


@app.command()
def up(foreground: bool = typer.Option(True, help="run in this terminal until Ctrl+C"),
       project_id: str = typer.Option(DEFAULT_PROJECT_ID, help="DEDUP_PROJECT_ID written to .stack/env")):
    """Start the stack and the product; .stack/env is written once everything answers."""
    if foreground:
        run_foreground(project_id)
    else:
        up_detached(project_id)


if __name__ == "__main__":
    app()
