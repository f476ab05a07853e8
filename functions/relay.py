"""HTTP entry point: FHIR Subscription rest-hook -> patient-changes topic."""

from __future__ import annotations

import functions_framework

from shared.bootstrap import caller_verifier, publisher
from shared.config import get_settings
from shared.services.relay import relay_notification


@functions_framework.http
def subscription_relay(request):
    settings = get_settings()
    result = relay_notification(
        method=request.method,
        path=request.path,
        authorization=request.headers.get("Authorization"),
        body=request.get_data(cache=False),
        settings=settings,
        publisher=publisher(settings),
        verifier=caller_verifier(settings),  # raises (500, 5xx alert) when no caller check is configured
    )
    return ({"status": result.reason}, result.status)
