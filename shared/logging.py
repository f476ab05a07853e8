"""Structured JSON logging (structlog), one line per event, in the shape Cloud Logging parses.

Patient data must never reach a log. Call sites log resource ids and NIK tokens only; as a second
line of defence, a processor removes any field whose name suggests patient data.
"""

from __future__ import annotations

import logging
import sys

import structlog

# Field names that would carry patient data. A log call using one of them is a bug; the value
# is replaced rather than dropped so the bug is visible in the log without leaking the data.
_FORBIDDEN_KEYS = frozenset(
    {"nik", "raw_nik", "name", "names", "given", "family", "birth_date", "birthdate", "birthDate",
     "address", "telecom", "phone", "patient", "resource"}
)


def _redact_patient_fields(_logger, _method, event_dict):
    for key in _FORBIDDEN_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def _cloud_logging_severity(_logger, method, event_dict):
    event_dict["severity"] = method.upper()
    return event_dict


_configured = False


def configure_logging(level: int = logging.INFO) -> None:
    global _configured
    if _configured:
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _redact_patient_fields,
            _cloud_logging_severity,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def set_level(level: int) -> None:
    """Only ``level`` and above from now on (tools that run services in-process and print their own
    progress use WARNING, so the newcomer's screen is not flooded with JSON lines)."""
    configure_logging()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


def get_logger(name: str):
    configure_logging()
    return structlog.get_logger(name)
