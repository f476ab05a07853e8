"""The review workbench on the local stack, with the development sign-in.

    make stack-up && .venv/bin/python -m tools.runtime.workbench          # http://127.0.0.1:8085
    .venv/bin/python -m tools.runtime.workbench --env-file .stack/env --port 8085

Sign in as one of ``LOCAL_USERS`` (a clerk, a supervisor, a viewer). ``serve(settings, config)``
starts it in a thread for tests and for ``dedup up``.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import BaseWSGIServer, make_server

from shared.config import Settings
from workbench.app import WorkbenchServices, create_app
from workbench.config import WorkbenchConfig

LOCAL_USERS = {"petugas@dinkes.local": "reviewer", "kepala@dinkes.local": "supervisor",
               "tamu@dinkes.local": "viewer"}


def local_config(**overrides) -> WorkbenchConfig:
    return WorkbenchConfig(**{"mode": "local", "roles": LOCAL_USERS, **overrides})


@dataclass
class RunningWorkbench:
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


def serve(settings: Settings, config: WorkbenchConfig | None = None, services: WorkbenchServices | None = None,
          port: int = 0) -> RunningWorkbench:
    """The workbench in a background thread (threaded server) on 127.0.0.1."""
    app = create_app(settings, services, config or local_config())
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="workbench", daemon=True)
    thread.start()
    return RunningWorkbench(server, thread)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, default=Path(".stack/env"),
                        help="the local stack's settings (written by `make stack-up`)")
    parser.add_argument("--port", type=int, default=8085)
    args = parser.parse_args(argv)
    from dotenv import load_dotenv

    from shared.logging import configure_logging
    from workbench.config import local_stack_in_use

    load_dotenv(args.env_file, override=False)
    if not local_stack_in_use():
        parser.error(f"no FIRESTORE_EMULATOR_HOST (from the environment or {args.env_file}): start the local stack "
                     "first; the development sign-in never runs against a real Firestore")
    configure_logging()
    running = serve(Settings(), port=args.port)
    print(f"review workbench: {running.url}  (sign in as one of: {', '.join(LOCAL_USERS)})", flush=True)
    try:
        running.thread.join()
    except KeyboardInterrupt:
        running.stop()


if __name__ == "__main__":
    main()
