"""The local stack: Firestore emulator, Pub/Sub emulator and a FHIR server (sekmet) on free ports.

Used by the test fixtures (``tests/conftest.py``), the main job and by hand::

    python -m tools.runtime.stack up    # starts in the background, writes .stack/env, returns
    source .stack/env                   # FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, DEDUP_*
    python -m tools.runtime.stack status
    python -m tools.runtime.stack down

Every process is started in its own session (process group) and stopped by killing that group, so
wrappers never leave a Java process behind. Only processes started here are ever signalled. On Linux
each child also gets a parent-death signal, so a killed test run does not leave servers running.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import typer

REPO_ROOT = Path(__file__).resolve().parents[2]
FHIR_VENV = REPO_ROOT / ".venv-fhir"
SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
# DEDUP_STACK_DIR moves it (the integration tests run a second, whole product beside a developer's).
STATE_DIR = Path(os.environ.get("DEDUP_STACK_DIR") or REPO_ROOT / ".stack")
# The running stack's environment, in dotenv format (``export KEY=value`` lines, so a shell can
# ``source`` it too); the ops CLI reads it with ``--env-file`` / ``DEDUP_ENV_FILE``.
ENV_FILE = STATE_DIR / "env"
DEFAULT_PROJECT_ID = "dedup-local"
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0


class StackError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it). A start that loses the race retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _with_parent_death_signal(command: list[str]) -> list[str]:
    # The kernel SIGTERMs the child when the thread that started it dies, so even a SIGKILLed parent
    # leaves no server behind. util-linux's setpriv sets it and execs the command (same pid): no Python
    # runs between fork and exec, which is not safe while gRPC threads run (a preexec_fn crashed there).
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--", *command] if setpriv else command


@dataclass
class ManagedProcess:
    """One server process in its own process group, with its log file and readiness probe."""

    name: str
    port: int
    popen: subprocess.Popen
    log_path: Path
    startup_seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self) -> None:
        """Asks the process group to stop without waiting (``stop`` waits)."""
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        # The leader may be gone while a child of its group lives on (a wrapper script): kill the rest.
        _signal_group(self.pid, signal.SIGKILL)
        _registry.discard(self)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Registry:
    """Everything started by this Python process (and its temporary directories), cleaned up at
    exit or on SIGTERM/SIGHUP."""

    def __init__(self) -> None:
        # Re-entrant: the signal handler runs on the main thread, possibly while it holds the lock.
        self._lock = threading.RLock()
        self._processes: list[ManagedProcess] = []
        self._temp_dirs: set[Path] = set()
        self._hooks_installed = False

    def add_temp_dir(self, path: Path) -> None:
        with self._lock:
            self._temp_dirs.add(path)

    def remove_temp_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            self._temp_dirs.discard(path)

    def add(self, proc: ManagedProcess) -> None:
        with self._lock:
            self._processes.append(proc)
            if not self._hooks_installed:
                self._install_hooks()

    def discard(self, proc: ManagedProcess) -> None:
        with self._lock:
            if proc in self._processes:
                self._processes.remove(proc)

    def stop_all(self) -> None:
        with self._lock:
            processes = list(reversed(self._processes))
            temp_dirs = list(self._temp_dirs)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.stop()
        for path in temp_dirs:
            self.remove_temp_dir(path)

    def _install_hooks(self) -> None:
        atexit.register(self.stop_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                # Leave a handler somebody else installed alone. The default would die at once,
                # skipping atexit; an exception instead could be swallowed (pytest reports it as a
                # test error and carries on), so clean up here and then die of the signal.
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, _clean_up_then_die)
        self._hooks_installed = True


def _clean_up_then_die(signum, _frame):
    _registry.stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_registry = _Registry()


def launch(name: str, command: list[str], port: int, log_path: Path, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> ManagedProcess:
    """Start ``command`` in a new session. Call from a long-lived thread (the parent-death signal
    fires when the starting *thread* ends)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            _with_parent_death_signal(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            env=env, start_new_session=True,
        )
    proc = ManagedProcess(name=name, port=port, popen=popen, log_path=log_path)
    _registry.add(proc)
    return proc


def wait_until_ready(proc: ManagedProcess, probe: Callable[[], bool], started_at: float,
                     timeout: float = READY_TIMEOUT_SECONDS) -> float:
    """Polls ``probe`` until it answers True; returns the seconds since ``started_at``."""
    deadline = started_at + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StackError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        if probe():
            proc.startup_seconds = time.monotonic() - started_at
            return proc.startup_seconds
        time.sleep(0.05)
    proc.stop()
    raise StackError(f"{proc.name} not ready after {timeout:.0f}s:\n{proc.log_tail()}")


def _http_probe(url: str, expect_text: str | None = None) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        return expect_text is None or response.text.strip() == expect_text

    return probe


# --------------------------------------------------------------------------------------------
# components


@functools.lru_cache(maxsize=1)
def sdk_root() -> Path:
    """The Google Cloud SDK root, which holds the emulator jars under ``platform/``."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        # <root>/bin/gcloud in the usual installs; asking `gcloud info` costs about 2 s.
        beside = Path(gcloud).resolve().parent.parent
        if (beside / "platform").is_dir():
            return beside
        try:
            out = subprocess.run([gcloud, "info", "--format=value(installation.sdk_root)"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()
            if out and Path(out, "platform").is_dir():
                return Path(out)
        except (subprocess.SubprocessError, OSError):
            pass
    return Path("/usr/lib/google-cloud-sdk")


def ensure_fhir_venv(venv: Path = FHIR_VENV) -> Path:
    """Returns the ``sekmet`` executable, creating the FHIR server's own virtualenv if missing."""
    sekmet = venv / "bin" / "sekmet"
    if not sekmet.exists():
        print(f"creating {venv} with {SEKMET_REQUIREMENT} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", SEKMET_REQUIREMENT], check=True)
    return sekmet


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found on PATH (the emulators need Java 17+)")
    return java


# The emulators' JVMs compile with C1 only. On a 2-core machine the C2 compiler's threads compete
# with everything else for the whole of a short run: C1-only cut the Firestore emulator's CPU for
# the same work by more than half (43.8 -> 18.7 CPU-s for 1,600 merge-task-shaped iterations),
# and its wall time too. Production uses the managed services, so this only shapes local runs.
EMULATOR_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)


def _emulator_commands(sdk: Path, port: int) -> dict[str, list[str]]:
    pubsub_jars = sorted((sdk / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"))
    firestore_jar = sdk / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not pubsub_jars or not firestore_jar.exists():
        raise StackError(f"emulator jars not found under {sdk}/platform (install the gcloud emulator components)")
    return {
        "firestore": [_java(), *EMULATOR_JVM_OPTIONS, "-cp", str(firestore_jar),
                      "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                      "start", f"--host={HOST}", f"--port={port}"],
        "pubsub": [_java(), *EMULATOR_JVM_OPTIONS, "-jar", str(pubsub_jars[-1]), f"--host={HOST}", f"--port={port}"],
    }


@dataclass
class FhirServer:
    """A sekmet FHIR server with its own temporary data directory (an empty store)."""

    process: ManagedProcess
    base_url: str
    work_dir: Path
    keep_work_dir: bool = False

    @property
    def startup_seconds(self) -> float | None:
        return self.process.startup_seconds

    def stop(self) -> None:
        self.process.stop()
        if not self.keep_work_dir:
            _registry.remove_temp_dir(self.work_dir)

    def __enter__(self) -> FhirServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _launch_fhir(work_dir: Path, port: int) -> tuple[ManagedProcess, str]:
    sekmet = ensure_fhir_venv()
    base_url = f"http://{HOST}:{port}/fhir"
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "settings.yaml"
    # JSON is valid YAML; paths are absolute so nothing lands in the working directory.
    config.write_text(json.dumps({
        "base_url": base_url, "host": HOST, "port": port,
        "data_dir": str(work_dir / "data"),
        "own_private_key_path": str(work_dir / "keys" / "sekmet_private.pem"),
        "simulator": {"enabled": False},
        "log_inbound": False,
    }, indent=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_") and k != "SSL_CERT_FILE"}
    # sekmet builds a new TLS context for every rest-hook notification, loading the whole CA bundle
    # each time: a fifth of the server's time in the benchmark (py-spy), under the GIL, so every
    # request waited. It only ever calls plain-http local endpoints (the relay), so it gets an empty
    # CA directory, which costs nothing to load.
    no_ca = work_dir / "no-ca"
    no_ca.mkdir(exist_ok=True)
    env["SSL_CERT_DIR"] = str(no_ca)
    proc = launch("fhir", [str(sekmet), "serve", "-c", str(config)], port, work_dir / "fhir.log", cwd=work_dir, env=env)
    return proc, base_url


def _start_with_retries(start: Callable[[int], tuple[ManagedProcess, Callable[[], bool], object]],
                        attempts: int = 3):
    """Starts on a fresh free port; if the server dies at once (port taken meanwhile), tries again."""
    last_error: StackError | None = None
    for _ in range(attempts):
        began = time.monotonic()
        proc, probe, result = start(free_port())
        try:
            wait_until_ready(proc, probe, began)
            return result
        except StackError as error:
            proc.stop()
            last_error = error
    raise last_error  # type: ignore[misc]


def start_fhir_server(work_dir: Path | None = None) -> FhirServer:
    """Starts an extra, empty FHIR server (about a second) and waits until it answers."""
    own_dir = work_dir is None
    if own_dir:
        work_dir = Path(tempfile.mkdtemp(prefix="dedup-fhir-"))
        _registry.add_temp_dir(work_dir)

    def start(port: int):
        proc, base_url = _launch_fhir(work_dir, port)
        return proc, _http_probe(f"{base_url}/metadata"), FhirServer(proc, base_url, work_dir, not own_dir)

    try:
        return _start_with_retries(start)
    except BaseException:
        if own_dir:
            _registry.remove_temp_dir(work_dir)
        raise


# --------------------------------------------------------------------------------------------
# the stack


@dataclass
class LocalStack:
    """Both emulators and one FHIR server. ``start()`` launches all three at once and waits for each."""

    project_id: str = DEFAULT_PROJECT_ID
    work_dir: Path | None = None
    firestore: ManagedProcess | None = field(default=None, init=False)
    pubsub: ManagedProcess | None = field(default=None, init=False)
    fhir: FhirServer | None = field(default=None, init=False)
    _own_work_dir: bool = field(default=False, init=False)

    def start(self) -> LocalStack:
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="dedup-stack-"))
            self._own_work_dir = True
            _registry.add_temp_dir(self.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        sdk = sdk_root()
        ensure_fhir_venv()
        launched: list[ManagedProcess] = []
        try:
            # Launch everything first (they boot in parallel), then wait for each in turn.
            began: dict[str, float] = {}
            for name in ("firestore", "pubsub"):
                began[name] = time.monotonic()
                launched.append(self._launch_emulator(sdk, name))
            began["fhir"] = time.monotonic()
            fhir_proc, fhir_url = _launch_fhir(self.work_dir / "fhir", free_port())
            launched.append(fhir_proc)
            for proc in launched[:2]:
                setattr(self, proc.name, self._await_emulator(sdk, proc, began[proc.name]))
            try:
                wait_until_ready(fhir_proc, _http_probe(f"{fhir_url}/metadata"), began["fhir"])
                self.fhir = FhirServer(fhir_proc, fhir_url, self.work_dir / "fhir", keep_work_dir=True)
            except StackError:
                fhir_proc.stop()
                self.fhir = start_fhir_server(self.work_dir / "fhir")
        except BaseException:
            for proc in launched:
                proc.terminate()
            self.stop()
            for proc in launched:
                proc.stop()
            raise
        return self

    def _launch_emulator(self, sdk: Path, name: str) -> ManagedProcess:
        port = free_port()
        return launch(name, _emulator_commands(sdk, port)[name], port, self.work_dir / f"{name}.log")

    def _await_emulator(self, sdk: Path, proc: ManagedProcess, began: float) -> ManagedProcess:
        name = proc.name
        try:
            wait_until_ready(proc, _http_probe(f"http://{HOST}:{proc.port}/", "Ok"), began)
            return proc
        except StackError:
            proc.stop()

            def start(port: int):
                retry = launch(name, _emulator_commands(sdk, port)[name], port, self.work_dir / f"{name}.log")
                return retry, _http_probe(f"http://{HOST}:{port}/", "Ok"), retry

            return _start_with_retries(start, attempts=2)

    def stop(self) -> None:
        parts = [part for part in (self.fhir, self.pubsub, self.firestore) if part is not None]
        for proc in self.processes.values():
            proc.terminate()  # all at once: each JVM takes a moment to shut down
        for part in parts:
            part.stop()
        if self._own_work_dir and self.work_dir is not None:
            _registry.remove_temp_dir(self.work_dir)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start_fhir_server(self) -> FhirServer:
        return start_fhir_server()

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        parts = {"firestore": self.firestore, "pubsub": self.pubsub, "fhir": self.fhir.process if self.fhir else None}
        return {name: proc for name, proc in parts.items() if proc is not None}

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.items()}

    @property
    def startup_seconds(self) -> dict[str, float]:
        return {name: proc.startup_seconds for name, proc in self.processes.items()
                if proc.startup_seconds is not None}

    @property
    def env(self) -> dict[str, str]:
        if not (self.firestore and self.pubsub and self.fhir):
            raise StackError("the stack is not running")
        return {
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{self.firestore.port}",
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{self.pubsub.port}",
            "DEDUP_FHIR_BASE_URL": self.fhir.base_url,
            "DEDUP_PROJECT_ID": self.project_id,
            # Development defaults (the NIK key) are allowed here only (shared/config.py).
            "DEDUP_ENVIRONMENT": "local",
        }

    def describe(self) -> str:
        lines = [f"{name:<10} pid {proc.pid:<8} port {proc.port:<6} ready in {proc.startup_seconds or 0:.2f}s"
                 for name, proc in self.processes.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# command line (state of a background stack lives in .stack/)


def _state_path() -> Path:
    return STATE_DIR / "state.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state() -> dict | None:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None


def _write_state(stack: LocalStack, supervisor_pid: int, product=None) -> None:
    STATE_DIR.mkdir(exist_ok=True)
    processes = {**stack.processes, **(product.processes if product else {})}
    env = {**stack.env, **(product.env if product else {})}
    state = {"supervisor_pid": supervisor_pid, "pids": {name: proc.pid for name, proc in processes.items()},
             "ports": {name: proc.port for name, proc in processes.items()},
             "startup_seconds": stack.startup_seconds, "env": env,
             "workbench_url": product.workbench_url if product else None}
    _state_path().write_text(json.dumps(state, indent=2))
    env_lines = [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    partial = ENV_FILE.with_name(ENV_FILE.name + ".partial")   # renamed into place: never read half-written
    partial.write_text("\n".join(env_lines) + "\n")
    partial.replace(ENV_FILE)


def _clear_state() -> None:
    for path in (_state_path(), ENV_FILE):
        path.unlink(missing_ok=True)


def _run_foreground(project_id: str, start_product: Callable[[LocalStack], object] | None = None) -> None:
    """Runs the stack until a signal; ``start_product`` (``tools.runtime.product``) adds the functions."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    began = time.monotonic()
    stack = LocalStack(project_id=project_id, work_dir=STATE_DIR / "run")
    product = None
    # Fresh data on every start: the FHIR store of a previous run would otherwise come back.
    shutil.rmtree(STATE_DIR / "run", ignore_errors=True)
    try:
        stack.start()
        print(stack.describe(), flush=True)
        if start_product is not None:
            product = start_product(stack)
            print(f"{len(product.processes)} functions running (logs in {product.log_dir}): "
                  f"{', '.join(product.processes)}", flush=True)
            print(f"review workbench: {product.workbench_url or 'not in this checkout'}", flush=True)
        print(f"stack ready in {time.monotonic() - began:.2f}s (components start in parallel)", flush=True)
        print(f"environment: source {ENV_FILE}", flush=True)
        print(_ops_hint(), flush=True)
        # Last: `up` returns (and prints this log) once the env file exists.
        _write_state(stack, os.getpid(), product)
        while not stop.is_set() and all(proc.alive() for proc in stack.processes.values()) \
                and (product is None or product.alive()):
            stop.wait(0.5)
        for name, proc in {**stack.processes, **(product.processes if product else {})}.items():
            if not proc.alive():
                print(f"{name} exited unexpectedly:\n{proc.log_tail()}", file=sys.stderr, flush=True)
    finally:
        if product is not None:
            product.stop()
        stack.stop()
        _clear_state()
        print("stopped", flush=True)


def _ops_hint() -> str:
    return (f"ops CLI on this stack: `dedup ...` inside this checkout finds {ENV_FILE} by itself; "
            f"elsewhere: export DEDUP_ENV_FILE={ENV_FILE}")


app = typer.Typer(add_completion=False, help="Local emulators and FHIR server for development and tests.")


@app.command()
def up(foreground: bool = typer.Option(False, help="run in this terminal until Ctrl+C"),
       project_id: str = typer.Option(DEFAULT_PROJECT_ID, help="DEDUP_PROJECT_ID written to .stack/env"),
       functions: bool = typer.Option(False, help="also every function, the FHIR Subscriptions and the workbench")):
    """Start the stack and write .stack/env; returns once everything answers."""
    state = _read_state()
    if state and _pid_alive(state["supervisor_pid"]):
        typer.echo(f"already running (supervisor pid {state['supervisor_pid']}); source {ENV_FILE}")
        typer.echo(_ops_hint())
        raise typer.Exit(0)
    _clear_state()
    if foreground and functions:
        raise typer.BadParameter("the whole product in the foreground: python -m tools.runtime.product")
    if foreground:
        _run_foreground(project_id)
        return
    STATE_DIR.mkdir(exist_ok=True)
    log_path = STATE_DIR / "stack.log"
    with open(log_path, "wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tools.runtime.product" if functions else "tools.runtime.stack", "up",
             "--foreground", "--project-id", project_id],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS * (4 if functions else 2)
    while time.monotonic() < deadline:
        if ENV_FILE.exists():
            typer.echo(log_path.read_text().strip())
            return
        if supervisor.poll() is not None:
            typer.echo(log_path.read_text(), err=True)
            raise typer.Exit(1)
        time.sleep(0.1)
    _signal_group(supervisor.pid, signal.SIGTERM)
    typer.echo(f"stack did not come up in time; see {log_path}", err=True)
    raise typer.Exit(1)


@app.command()
def down():
    """Stop the stack that `up` started."""
    state = _read_state()
    if not state:
        typer.echo("not running")
        return
    supervisor = state["supervisor_pid"]
    if _pid_alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _pid_alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.1)
    # If the supervisor is gone but left servers (it was SIGKILLed), stop their groups.
    for pid in state["pids"].values():
        if _pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
    _clear_state()
    typer.echo("stopped")


@app.command()
def env():
    """Print the environment of the running stack (as `export` lines)."""
    if not ENV_FILE.exists():
        typer.echo("not running; start it with: python -m tools.runtime.stack up", err=True)
        raise typer.Exit(1)
    typer.echo(ENV_FILE.read_text().strip())


def read_state(state_dir: Path | None = None) -> dict | None:
    """The running stack's state (``.stack/state.json``, or under ``state_dir``), or None when no stack runs."""
    try:
        state = json.loads(((state_dir or STATE_DIR) / "state.json").read_text())
    except (OSError, ValueError):
        state = None
    return state if state and _pid_alive(state["supervisor_pid"]) else None


def component_health(state: dict) -> list[dict]:
    """Each component of a running stack: name, pid, port, start-up seconds, and whether it answers
    (HTTP for the servers, a TCP connect for the functions)."""
    rows = []
    for name, port in state["ports"].items():
        if name in ("firestore", "pubsub", "fhir"):
            url = f"http://{HOST}:{port}/fhir/metadata" if name == "fhir" else f"http://{HOST}:{port}/"
            ok = _http_probe(url)()
        else:
            try:
                with socket.create_connection((HOST, port), timeout=2):
                    ok = True
            except OSError:
                ok = False
        rows.append({"name": name, "pid": state["pids"][name], "port": port,
                     "startup_seconds": state["startup_seconds"].get(name), "ok": ok})
    return rows


@app.command()
def status():
    """Show each component's pid, port, start-up time and whether it answers."""
    state = _read_state()
    if not state:
        typer.echo("not running")
        raise typer.Exit(1)
    rows = component_health(state)
    for row in rows:
        typer.echo(f"{row['name']:<20} pid {row['pid']:<8} port {row['port']:<6} "
                   f"started in {row['startup_seconds'] or 0:.2f}s  {'ok' if row['ok'] else 'NOT ANSWERING'}")
    raise typer.Exit(0 if all(row["ok"] for row in rows) else 1)


if __name__ == "__main__":
    app()
