"""HTTP entry point: FHIR's ``Patient/$merge`` operation (``shared.services.patient_merge``).

POST a Parameters resource to the function's URL (any path: a gateway may route
``[base]/Patient/$merge`` here). Authenticated exactly as the relay is (``caller_authorized``, one
check for both HTTP functions); ``Prefer: respond-async`` answers 202 with a Task at once.
"""

from __future__ import annotations

import functions_framework

from shared.bootstrap import patient_merge_operation
from shared.config import get_settings
from shared.services.patient_merge import outcome
from shared.services.relay import caller_authorized

_FHIR_JSON = {"Content-Type": "application/fhir+json"}


@functions_framework.http
def patient_merge(request):
    settings = get_settings()
    if not caller_authorized(request.headers.get("Authorization"), settings):
        return outcome("error", "security", "not authorised"), 401, _FHIR_JSON
    if request.method != "POST":
        return outcome("error", "not-supported", "POST a Parameters resource"), 405, _FHIR_JSON
    body = request.get_json(force=True, silent=True)
    prefer_async = "respond-async" in (request.headers.get("Prefer") or "")
    result = patient_merge_operation(settings).run(body, prefer_async=prefer_async)
    return result.body, result.status, _FHIR_JSON
