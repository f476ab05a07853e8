"""The `dedup` error handler: every failure is one line on stderr with the right exit code (2 usage,
3 not found, 4 cannot reach a service, 1 other), fast, and without patient data or tracebacks."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pytest

from ops.cli import run

KEYS = ("DEDUP_PROJECT_ID", "DEDUP_FHIR_BASE_URL", "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST",
        "DEDUP_ENV_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "DEDUP_DEBUG")


@pytest.fixture(autouse=True)
def no_stack(monkeypatch, tmp_path):
    """No settings, no emulators, no credentials, and a working directory with no .stack/env."""
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    monkeypatch.chdir(tmp_path)


def dedup(capsys, *args: str) -> tuple[int, str, str, float]:
    began = time.monotonic()
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - began


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]   # closed again when the block ends


@pytest.fixture
def web_page():
    """An HTTP server that answers every GET with an HTML page: not a FHIR server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            body = b"<html><body>hello</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()


def test_version(capsys):
    code, out, err, _ = dedup(capsys, "--version")
    assert code == 0 and out.startswith("dedup ") and not err


@pytest.mark.parametrize("args", [("status", "job", "--bogus"), ("merge", "--master", "a"), ("no-such-command",),
                                  ("backfill", "--page-size", "0")])
def test_usage_errors_exit_2(capsys, args):
    code, _, err, _ = dedup(capsys, *args)
    assert code == 2
    assert "--help" in one_error_line(err)


def test_not_a_url_exits_2_without_network(capsys):
    code, _, err, seconds = dedup(capsys, "--fhir-url", "not a url", "preview", "a", "b")
    assert code == 2 and "not an http(s) URL" in one_error_line(err) and seconds < 3


def test_closed_port_fails_fast_with_4(capsys):
    code, _, err, seconds = dedup(capsys, "--fhir-url", f"http://127.0.0.1:{closed_port()}/fhir", "backfill")
    line = one_error_line(err)
    assert code == 4 and "cannot reach the FHIR server" in line and "dedup up" in line
    assert seconds < 5   # no retries: the FHIR client's retry budget would take minutes


def test_not_a_fhir_server_exits_4(capsys, web_page):
    code, _, err, seconds = dedup(capsys, "--fhir-url", web_page, "reconcile")
    assert code == 4 and "is not a FHIR server" in one_error_line(err) and seconds < 5


def test_no_credentials_and_no_emulator_exits_4(capsys):
    code, _, err, _ = dedup(capsys, "report")
    line = one_error_line(err)
    assert code == 4 and "no Google credentials" in line and "gcloud auth application-default login" in line


def test_an_unreachable_emulator_exits_4(capsys, monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{closed_port()}")
    code, _, err, _ = dedup(capsys, "jobs")
    assert code == 4 and "Firestore emulator" in one_error_line(err)


def test_missing_path_exits_3(capsys, tmp_path):
    code, _, err, _ = dedup(capsys, "load", str(tmp_path / "nothing-here"))
    assert code == 3 and "does not exist" in one_error_line(err)


def test_unreadable_input_exits_2(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("not fhir")
    (tmp_path / "empty").mkdir()
    code, _, err, _ = dedup(capsys, "load", str(tmp_path / "notes.txt"))
    assert code == 2 and "is not FHIR JSON or NDJSON" in one_error_line(err)
    code, _, err, _ = dedup(capsys, "load", str(tmp_path / "empty"))
    assert code == 2 and "no FHIR data found" in one_error_line(err)


def test_a_bad_age_is_a_usage_error(capsys, monkeypatch):
    code, _, err, _ = dedup(capsys, "jobs", "--older-than", "soon")
    assert code == 2 and "'soon' is not an age" in one_error_line(err)


def test_no_stack_status_exits_3(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("tools.runtime.stack.STATE_DIR", tmp_path / ".stack")
    code, out, _, _ = dedup(capsys, "status")
    assert code == 3 and "no local stack running" in out


def test_an_unexpected_error_is_one_line_exit_1(capsys, monkeypatch):
    def boom(*_args, **_kwargs):
        raise ZeroDivisionError("with a message that is not shown")

    monkeypatch.setattr("ops.load.discover", boom)
    code, _, err, _ = dedup(capsys, "load", ".")
    line = one_error_line(err)
    assert code == 1 and "ZeroDivisionError" in line and "not shown" not in line and "DEDUP_DEBUG" in line


def test_warnings_are_readable_lines_unless_log_json(capsys):
    from shared.logging import get_logger, use_terminal_output

    use_terminal_output(json_lines=False)
    get_logger("test").warning("something_odd", patient_id="p1", nik="3201011203850001")
    get_logger("test").info("not_shown")
    err = capsys.readouterr().err
    assert err.strip() == "warning: something_odd patient_id=p1 nik=[redacted]"
    use_terminal_output(json_lines=True)
    get_logger("test").info("shown", patient_id="p1")
    assert '"event": "shown"' in capsys.readouterr().err
    use_terminal_output(json_lines=False)


def test_debug_prints_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv("DEDUP_DEBUG", "1")
    monkeypatch.setattr("ops.load.discover", lambda *_: 1 / 0)
    code, _, err, _ = dedup(capsys, "load", ".")
    assert code == 1 and "Traceback" in err
    assert os.environ["DEDUP_DEBUG"] == "1"


def test_review_list_never_cuts_an_id(capsys, monkeypatch):
    from rich.console import Console

    from shared.domain.review import ReviewItem

    long_ids = ["patient-with-a-rather-long-identifier-0001", "patient-with-a-rather-long-identifier-0002"]
    item = ReviewItem.proposed("nik_index/abc", long_ids, "name-mismatch", {"name_score": 80.5}, "2025-01-01")

    class Reviews:
        def pending(self, reason, limit):
            return [item]

    monkeypatch.setattr("ops.preflight.preflight", lambda *_: None)
    monkeypatch.setattr("ops.cli._review_service", lambda _settings: Reviews())
    monkeypatch.setattr("ops.cli.console", Console(width=60))   # a narrow terminal
    code, out, err, _ = dedup(capsys, "review", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[:2] == [item.id, "name-mismatch"] and '"name_score": 80.5' in lines[1]
    assert [line.strip() for line in lines[2:]] == long_ids


def test_backfill_engine_errors_are_one_line_before_any_work(capsys, monkeypatch):
    monkeypatch.setenv("DEDUP_ENVIRONMENT", "local")
    code, _, err, _ = dedup(capsys, "backfill", "--engine", "bogus")
    assert code == 2 and "--engine bogus: one of duckdb, spark, none" in one_error_line(err)
    code, _, err, _ = dedup(capsys, "backfill", "--spark-master", "local[2]")
    assert code == 2 and "--spark-master goes with --engine spark" in one_error_line(err)
    code, _, err, _ = dedup(capsys, "backfill", "--engine", "spark", "--spark-master", "nonsense://x")
    assert code == 2 and "--spark-master 'nonsense://x' is not a Spark master URL" in one_error_line(err)
    # No Java: the Spark engine refuses at once, with what to do.
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    code, _, err, seconds = dedup(capsys, "backfill", "--engine", "spark", "--spark-master", "local[2]")
    line = one_error_line(err)
    assert code == 2 and "--engine spark needs Java 17" in line and "--engine duckdb" in line and seconds < 5


def test_a_backfill_that_lost_its_work_files_says_so_in_one_line(capsys, monkeypatch):
    from shared.services.batch_backfill import WorkDirLost

    def lost(*_args, **_kwargs):
        raise WorkDirLost("backfill run r1 is in phase write-keys but /tmp/w/decisions is gone and no kept copy "
                          "exists: resume it with its work directory, or start a new run")

    monkeypatch.setattr("ops.load.discover", lost)
    code, _, err, _ = dedup(capsys, "load", ".")
    line = one_error_line(err)
    assert code == 1 and "run r1 is in phase write-keys" in line and "unexpected" not in line
