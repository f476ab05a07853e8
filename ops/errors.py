"""The one error handler of the `dedup` command: every failure ends as one line on stderr, with a hint,
and an exit code that says what kind of failure it was.

    0 ok, 1 other failure, 2 usage (a bad option, argument or input file), 3 not found (an id, a job,
    a path), 4 cannot reach a service (FHIR server, emulators, Google credentials), 130 interrupted.

Commands raise (an ``OpsError`` subclass, or whatever a library raises); ``run`` maps the exception.
A library's message is shown only when it is known to carry no patient data (ours are written to name
ids and reason codes only); anything else shows its type, and ``DEDUP_DEBUG=1`` prints the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import typer

# Typer 0.29 ships its own copy of click (typer._click); its exceptions are the ones a Typer app raises.
from typer._click import exceptions as click_exceptions

OK, OTHER, USAGE, NOT_FOUND, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 130


class OpsError(click_exceptions.ClickException):
    """A failure the operator can act on: ``message`` (one line) and ``hint`` (what to do). A
    ``ClickException``, so a command run by Typer's own runner (tests) exits with the same code."""

    exit_code = OTHER

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def format_message(self) -> str:
        return self.message + (f" (hint: {self.hint})" if self.hint else "")


class UsageProblem(OpsError):
    exit_code = USAGE


class NotFoundProblem(OpsError):
    exit_code = NOT_FOUND


class Unreachable(OpsError):
    exit_code = UNREACHABLE


STACK_HINT = ("start the local stack with `dedup up --detach`, "
              "or point --env-file / --fhir-url / --project at a district")


def describe(error: BaseException) -> tuple[int, str, str | None]:
    """(exit code, one-line message, hint) for any exception a command can raise."""
    from shared.fhir.errors import FhirError, NotFound, RetriesExhausted
    from shared.services.batch_backfill import WorkDirLost
    from shared.services.review import ReviewAlreadyDecided, ReviewItemNotFound, ReviewRefused

    if isinstance(error, OpsError):
        return error.exit_code, error.message, error.hint
    if isinstance(error, click_exceptions.UsageError):
        command = error.ctx.command_path if error.ctx else "dedup"
        return USAGE, error.format_message(), f"see `{command} --help`"
    if isinstance(error, (ReviewItemNotFound, NotFound)):
        return NOT_FOUND, str(error), None
    if isinstance(error, KeyError):  # the use cases' "no such job" (their own messages: ids only)
        return NOT_FOUND, str(error).strip("'\""), None
    if isinstance(error, (ReviewAlreadyDecided, ReviewRefused)):
        return OTHER, str(error), None
    if isinstance(error, WorkDirLost):   # its message names the run, the phase and the folder
        return OTHER, str(error), None
    if isinstance(error, RetriesExhausted):
        return UNREACHABLE, str(error), "check the FHIR server (`dedup status`) and try again"
    if isinstance(error, FhirError):
        return OTHER, str(error), None
    unreachable = _unreachable_google_or_http(error)
    if unreachable:
        return UNREACHABLE, unreachable, STACK_HINT
    return OTHER, f"unexpected {type(error).__module__}.{type(error).__qualname__}", \
        "DEDUP_DEBUG=1 prints the traceback"


def _unreachable_google_or_http(error: BaseException) -> str | None:
    import httpx

    if isinstance(error, httpx.TransportError):
        return f"cannot reach {error.request.url.host if _has_request(error) else 'a service'}: " \
               f"{type(error).__name__}"
    try:
        from google.api_core import exceptions as gexc
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:  # pragma: no cover - the Google clients are dependencies
        return None
    if isinstance(error, DefaultCredentialsError):
        return "no Google credentials (Application Default Credentials not found)"
    if isinstance(error, gexc.NotFound):
        return "a Pub/Sub topic or Firestore database does not exist in this project (is the pipeline running?)"
    if isinstance(error, (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError)):
        return "cannot reach Google Cloud (Firestore or Pub/Sub, or their emulators)"
    return None


def _has_request(error) -> bool:
    try:
        error.request  # noqa: B018 - raises RuntimeError when the error carries no request
        return True
    except RuntimeError:
        return False


def report(code: int, message: str, hint: str | None) -> None:
    line = f"error: {' '.join(message.split())}"
    if hint:
        line += f" (hint: {hint})"
    print(line, file=sys.stderr, flush=True)


def run_app(app, args: Sequence[str] | None = None, prog_name: str = "dedup") -> int:
    """Runs the Typer ``app`` and returns its exit code; every exception is reported in one line."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(sys.argv[1:] if args is None else args), prog_name=prog_name,
                              standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as error:
        print(error.ctx.get_help() if error.ctx else error.format_message())
        return USAGE
    except typer.Abort:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except typer.Exit as done:
        return done.exit_code
    except Exception as error:  # the one handler
        code, message, hint = describe(error)
        if os.environ.get("DEDUP_DEBUG"):
            traceback.print_exc()
        report(code, message, hint)
        return code
    return result if isinstance(result, int) else OK
