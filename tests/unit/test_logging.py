"""Patient data never reaches a log line, however it is logged (issue: PHI in logs)."""

from __future__ import annotations

import io
import json
import logging

import structlog

from shared.logging import PROCESSORS, library_handler, scrub_text

NIK = "3201014103880003"
NAME = "Sri Wahyuni"
BIRTH_DATE = "1988-03-01"
NIK_FORMS = (NIK, "3201 0141 0388 0003", "3201.0141.0388.0003", "32-01-01-41-03-88-0003", "320101410388003",
             "32010141038800031")


def _structlog_lines(log_calls) -> list[str]:
    buffer = io.StringIO()
    # Every level, whatever an earlier test's tool set globally (``shared.logging.set_level``).
    logger = structlog.wrap_logger(structlog.PrintLogger(buffer), processors=PROCESSORS,
                                   wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    log_calls(logger)
    return buffer.getvalue().splitlines()


def _assert_clean(lines: list[str]) -> None:
    assert lines, "nothing was logged"
    text = "\n".join(lines)
    digits = text.replace(" ", "").replace(".", "").replace("-", "")
    assert NIK not in digits and NIK[:-1] not in digits
    assert NAME not in text and "Wahyuni" not in text
    assert BIRTH_DATE not in text and "01/03/1988" not in text


def test_top_level_nested_and_free_text_fields_are_scrubbed():
    def calls(log):
        log.info("top", nik=NIK, name=NAME, birth_date=BIRTH_DATE)
        log.info("nested", detail={"patient": {"name": NAME},
                                   "values": [{"identifier": NIK}, {"birthDate": BIRTH_DATE}]})
        log.info("other keys", query=f"identifier=https://fhir.kemkes.go.id/id/nik|{NIK}", value=int(NIK),
                 note=f"born 01/03/1988, NIK {NIK_FORMS[1]}", when=BIRTH_DATE)
        for form in NIK_FORMS:
            log.warning("a form of the NIK", seen=form)
        log.info(f"free text in the event itself: {NIK} on {BIRTH_DATE}")

    lines = _structlog_lines(calls)
    _assert_clean(lines)
    first = json.loads(lines[0])
    assert first["nik"] == first["name"] == first["birth_date"] == "[redacted]"


def test_exception_text_is_scrubbed():
    def calls(log):
        try:
            raise ValueError(f"bad patient {NAME!r}: nik={NIK} birthDate {BIRTH_DATE}")
        except ValueError:
            log.exception("failed", patient_id="p-1")

    lines = _structlog_lines(calls)
    _assert_clean(lines)
    event = json.loads(lines[0])
    assert "ValueError" in event["exception"] and event["patient_id"] == "p-1"


def test_library_loggers_are_scrubbed_and_quiet_below_warning():
    stream = io.StringIO()
    library = logging.getLogger("test.library")
    library.handlers = [library_handler(stream)]
    library.propagate = False
    library.setLevel(logging.WARNING)
    library.info("HTTP Request: GET http://fhir/Patient?identifier=nik|%s", NIK)   # below WARNING: dropped
    library.warning("HTTP Request: GET http://fhir/Patient?identifier=nik|%s&name=%s -> 500", NIK,
                    NAME.replace(" ", "%20"))   # a URL as a client logs it: encoded
    library.warning("retrying %s born %s", NIK_FORMS[2], BIRTH_DATE)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    _assert_clean(lines)
    assert json.loads(lines[0])["level"] == "warning"


def test_ids_tokens_and_timestamps_survive():
    token = "a3f1c9e2" * 4
    text = f"patient 4f1d2c3b-0000-4a5b-9c8d-1234567890ab token {token} at 2026-11-30T18:05:42+00:00 count 12"
    assert scrub_text(text) == text


def test_own_exceptions_keep_their_message_and_library_ones_only_type_and_stack():
    from shared.nik import NikError, parse_nik

    def calls(log):
        try:
            try:
                {}["x"].strip()
            except KeyError as error:
                raise ValueError(f"{NAME} could not be read") from error
        except ValueError:
            log.error("library failure", exc_info=True)
        try:
            parse_nik("12")
        except NikError:
            log.error("own failure", exc_info=True)

    library, own = (json.loads(line)["exception"] for line in _structlog_lines(calls))
    assert "builtins.ValueError: (message withheld" in library and "caused by: builtins.KeyError" in library
    assert "test_logging.py" in library and NAME not in library
    assert own.startswith("shared.nik.NikError: ") and "wrong-length" in own
