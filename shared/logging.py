"""Structured JSON logging (structlog), one line per event, in the shape Cloud Logging parses.

Patient data must never reach a log. Call sites log resource ids and NIK tokens only; as a second line
of defence every event passes ``scrub_patient_data`` before it is rendered, at any depth and in free
text (exception messages included):
- a value under a key that names patient data (``nik``, ``name``, ``birth_date``, ``address``, ...)
  is replaced by ``[redacted]`` (replaced, not dropped, so the bug that logged it stays visible);
- a NIK-shaped digit run (15 to 17 digits, with or without single separators) becomes ``[nik]``;
- a date without a time (a birth date: ``1990-05-15``, ``15-05-1990``, ``15/05/1990``) becomes ``[date]``;
  timestamps, which carry a time, stay;
- URL query values (``?identifier=...&name=...``) become ``...``;
- an exception keeps its message only when it is the service's own (``render_exception``).
Standard-library loggers (httpx, google clients, functions-framework) go through the same processors
and only from WARNING up, so a library cannot print a search URL with a NIK in it.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any

import structlog

# Keys whose values are patient data wherever they appear in an event.
_FORBIDDEN_KEYS = frozenset(
    {"nik", "raw_nik", "name", "names", "given", "family", "birth_date", "birthdate", "birthdate_text",
     "address", "telecom", "phone", "patient", "resource", "resources", "identifier", "identifiers", "text"}
)
_NIK_SHAPED = re.compile(r"(?<![0-9A-Za-z])\d(?:[ .\-]?\d){14,16}(?![0-9A-Za-z])")
_DATE_ONLY = re.compile(
    r"(?<![0-9A-Za-z])(?:\d{4}-\d{2}-\d{2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?![0-9]|T\d|\s\d{1,2}:\d{2})")
_QUERY_VALUE = re.compile(r"([?&][A-Za-z0-9_:\-.]+)=([^&\s\"']*)")
_MAX_DEPTH = 20
_OWN_PACKAGES = frozenset({"shared", "functions", "ops"})
REDACTED = "[redacted]"


def _forbidden(key: object) -> bool:
    return isinstance(key, str) and key.lower().lstrip("_") in _FORBIDDEN_KEYS


def scrub_text(text: str) -> str:
    text = _QUERY_VALUE.sub(lambda m: f"{m.group(1)}=..." if m.group(2) not in ("", "...") else m.group(0), text)
    text = _NIK_SHAPED.sub("[nik]", text)
    return _DATE_ONLY.sub("[date]", text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if _forbidden(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        # A NIK logged as a number is still a NIK.
        return scrub_text(str(value)) if isinstance(value, int) and not isinstance(value, bool) \
            and len(str(abs(value))) >= 15 else value
    return scrub_text(str(value))


def scrub_patient_data(_logger, _method, event_dict):
    """structlog processor: see the module docstring. Runs after exceptions are rendered to text."""
    return {k: REDACTED if _forbidden(k) else _scrub(v) for k, v in event_dict.items()}


def _describe_exception(error: BaseException) -> str:
    """Type, message and stack (file:line in function) of an exception and its causes. Only the service's
    own exceptions, whose messages are written to name ids and reason codes only, keep their message: a
    library's message may quote a value (a name, a query) that no pattern can recognise."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        own = type(current).__module__.split(".", 1)[0] in _OWN_PACKAGES
        message = str(current) if own else "(message withheld: not the service's own exception)"
        frames = [f"{frame.filename}:{frame.lineno} in {frame.name}"
                  for frame in traceback.extract_tb(current.__traceback__)]
        parts.append("\n".join([f"{type(current).__module__}.{type(current).__qualname__}: {message}", *frames]))
        current = current.__cause__ or current.__context__
    return "\ncaused by: ".join(parts)


def render_exception(_logger, _method, event_dict):
    """structlog processor: ``exc_info`` -> ``exception`` text (see ``_describe_exception``)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        error = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
        if error is not None:
            event_dict["exception"] = _describe_exception(error)
    return event_dict


def _cloud_logging_severity(_logger, method, event_dict):
    event_dict["severity"] = method.upper()
    return event_dict


_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    render_exception,   # exception text is scrubbed like the rest
    scrub_patient_data,
    _cloud_logging_severity,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
PROCESSORS = [*_SHARED_PROCESSORS, structlog.processors.JSONRenderer()]
_configured = False


def library_handler(stream) -> logging.Handler:
    """A standard-library handler writing the same scrubbed JSON lines as structlog's loggers."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder(),
                           *_SHARED_PROCESSORS[1:]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    ))
    return handler


def _route_library_logs() -> None:
    """Standard-library records (httpx, google clients) through the same scrubbing, WARNING and up."""
    root = logging.getLogger()
    root.handlers = [library_handler(sys.stderr)]
    root.setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "urllib3", "google", "grpc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure_logging(level: int = logging.INFO) -> None:
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=PROCESSORS,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_library_logs()
    _configured = True


def set_level(level: int) -> None:
    """Only ``level`` and above from now on (tools that run services in-process and print their own
    progress use WARNING, so the newcomer's screen is not flooded with JSON lines)."""
    configure_logging()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


def get_logger(name: str):
    configure_logging()
    return structlog.get_logger(name)


def _terminal_line(_logger, method, event_dict) -> str:
    """``warning: event key=value ...`` (already scrubbed): what an operator reads on a terminal."""
    event = event_dict.pop("event", "")
    for key in ("severity", "timestamp", "level", "logger"):
        event_dict.pop(key, None)
    details = " ".join(f"{key}={value}" for key, value in event_dict.items())
    return f"{method}: {event}" + (f" {details}" if details else "")


def _current_stderr(*_args) -> structlog.PrintLogger:
    # sys.stderr as it is when the line is written (a test's capture may have replaced it since).
    return structlog.PrintLogger(file=sys.stderr)


_terminal_output = False


def use_terminal_output(json_lines: bool) -> None:
    """For command-line tools: JSON lines from INFO up when asked (``--log-json``), else only warnings
    and errors, as one readable line each. The same scrubbing either way."""
    global _configured, _terminal_output
    renderer = structlog.processors.JSONRenderer() if json_lines else _terminal_line
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO if json_lines else logging.WARNING),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )
    _terminal_output = True
    _route_library_logs()
    if not json_lines:
        logging.getLogger().handlers[0].setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, *_SHARED_PROCESSORS[1:]],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        lambda logger, _method, event: _terminal_line(logger, event.get("level", "warning"), event)]))
    _configured = True


def reset_after_terminal_output() -> None:
    """Back to the functions' configuration after ``use_terminal_output`` (tests that run a CLI in-process)."""
    global _configured, _terminal_output
    if _terminal_output:
        structlog.reset_defaults()
        _configured = False
        _terminal_output = False
        configure_logging()
