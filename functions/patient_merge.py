"""HTTP entry point: FHIR's ``Patient/$merge`` operation (``shared.services.patient_merge``).

POST a Parameters resource to the function's URL (any path: a gateway may route
``[base]/Patient/$merge`` here). Authenticated exactly as the relay is (the same ``CallerVerifier``
from ``shared.bootstrap.caller_verifier``: a Google ID token for the configured audience and callers, or
the shared secret); ``Prefer: respond-async`` answers 202 with a Task at once.
"""

from __future__ import annotations

import functions_framework

from shared.bootstrap import caller_verifier, patient_merge_operation
from shared.config import get_settings
from shared.ports.callers import CallerRejected
from shared.services.patient_merge import outcome

_FHIR_JSON = {"Content-Type": "application/fhir+json"}


@functions_framework.http
def patient_merge(request):
    settings = get_settings()
    try:
        caller_verifier(settings).verify(request.headers.get("Authorization"))
    except CallerRejected:
        return outcome("error", "security", "not authorised"), 401, _FHIR_JSON
    if request.method != "POST":
        return outcome("error", "not-supported", "POST a Parameters resource"), 405, _FHIR_JSON
    body = request.get_json(force=True, silent=True)
    prefer_async = "respond-async" in (request.headers.get("Prefer") or "")
    result = patient_merge_operation(settings).run(body, prefer_async=prefer_async)
    return result.body, result.status, _FHIR_JSON
