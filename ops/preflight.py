"""Checks before a command starts work: is the FHIR URL a FHIR server, do the emulators answer, are
there Google credentials. Each check takes a second or two at most and never retries, so a closed
port, a web page that is not a FHIR server or a string that is not a URL fails at once, in one line,
instead of after the FHIR client's retry budget."""

from __future__ import annotations

import os
import socket

import httpx

from ops.errors import STACK_HINT, Unreachable, UsageProblem
from shared.config import Settings

TIMEOUT_SECONDS = 3.0

# What each command needs; a command not listed needs nothing (help, version, the local stack).
FHIR, FIRESTORE, PUBSUB = "fhir", "firestore", "pubsub"
NEEDS: dict[str, frozenset[str]] = {
    "force-merge": frozenset({FHIR, FIRESTORE, PUBSUB}),
    "backfill": frozenset({FHIR, FIRESTORE, PUBSUB}),
    "review": frozenset({FHIR, FIRESTORE, PUBSUB}),
    "status": frozenset({FIRESTORE}),
    "jobs": frozenset({FIRESTORE}),
    "links": frozenset({FHIR, FIRESTORE}),
    "unmerge": frozenset({FHIR, FIRESTORE}),
    "preview": frozenset({FHIR, FIRESTORE}),
    "merge": frozenset({FHIR, FIRESTORE, PUBSUB}),
    "reconcile": frozenset({FHIR, FIRESTORE}),
    "report": frozenset({FIRESTORE}),
    "load": frozenset({FHIR}),
}


def check_fhir_url(settings: Settings) -> None:
    """``GET [base]/metadata`` answers a CapabilityStatement, once, within a few seconds."""
    from shared.fhir.auth import auth_from_settings

    base = settings.fhir_base_url
    try:
        url = httpx.URL(base)
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise UsageProblem(f"--fhir-url {base!r} is not an http(s) URL", "e.g. http://127.0.0.1:8090/fhir")
    metadata = f"{base.rstrip('/')}/metadata"
    try:
        response = httpx.get(metadata, auth=auth_from_settings(settings), timeout=TIMEOUT_SECONDS,
                             headers={"Accept": "application/fhir+json"}, follow_redirects=True)
    except httpx.TransportError as error:
        raise Unreachable(f"cannot reach the FHIR server at {base} ({type(error).__name__})", STACK_HINT) from None
    if response.status_code in (401, 403):
        raise Unreachable(f"the FHIR server at {base} refused the credentials (HTTP {response.status_code})",
                          "check DEDUP_FHIR_AUTH and the token or `gcloud auth application-default login`")
    try:
        kind = response.json().get("resourceType") if response.status_code == 200 else None
    except ValueError:
        kind = None
    if kind != "CapabilityStatement":
        raise Unreachable(f"{base} is not a FHIR server (GET metadata answered HTTP {response.status_code}"
                          f"{'' if kind is None else ', ' + str(kind)})", "check --fhir-url / DEDUP_FHIR_BASE_URL")


def _emulator_answers(variable: str, what: str) -> None:
    host_port = os.environ[variable]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=TIMEOUT_SECONDS):
            return
    except (OSError, ValueError):
        raise Unreachable(f"the {what} emulator at {host_port} ({variable}) does not answer", STACK_HINT) from None


def check_google(settings: Settings, needs: frozenset[str]) -> None:
    """The emulators answer, or (no emulator configured) Application Default Credentials exist."""
    emulated = {FIRESTORE: "FIRESTORE_EMULATOR_HOST", PUBSUB: "PUBSUB_EMULATOR_HOST"}
    real = [need for need in (FIRESTORE, PUBSUB) if need in needs and not os.environ.get(emulated[need])]
    for need in (FIRESTORE, PUBSUB):
        if need in needs and os.environ.get(emulated[need]):
            _emulator_answers(emulated[need], "Firestore" if need == FIRESTORE else "Pub/Sub")
    if real:
        import logging

        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        # google.auth logs a warning for each way it tried; the one line below says it all.
        logging.getLogger("google.auth").setLevel(logging.ERROR)
        try:
            google.auth.default()
        except DefaultCredentialsError:
            raise Unreachable(f"no Google credentials for project {settings.project_id} and no emulator set",
                              "`gcloud auth application-default login`, or run against the local stack: "
                              "`dedup up --detach`") from None


def preflight(command: str, settings: Settings) -> None:
    needs = NEEDS.get(command, frozenset())
    if FHIR in needs:
        check_fhir_url(settings)
    check_google(settings, needs)
