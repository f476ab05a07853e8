"""Authentication for the FHIR client, each scheme an ``httpx.Auth``.

- ``NoAuth``: the local server.
- ``BearerAuth``: a static token (a FHIR server behind a gateway).
- ``GoogleAuth``: Application Default Credentials for the Cloud Healthcare API; refreshes the access
  token when it has expired (or is about to), and once more if the server answers 401.
"""

from __future__ import annotations

import threading
from collections.abc import Generator

import httpx
from pydantic import SecretStr

from shared.config import Settings

GOOGLE_CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class NoAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


class BearerAuth(httpx.Auth):
    def __init__(self, token: str | SecretStr):
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not secret:
            raise ValueError("BearerAuth needs a non-empty token")
        self._header = f"Bearer {secret}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:  # never show the token
        return "BearerAuth(token=***)"


class GoogleAuth(httpx.Auth):
    """OAuth2 access tokens from google-auth credentials (ADC by default).

    Thread-safe: one refresh at a time, shared by every request of a client used from many threads.
    ``credentials`` and ``token_request`` can be injected (tests, or credentials built elsewhere).
    """

    def __init__(self, credentials=None, token_request=None):
        if credentials is None:
            import google.auth

            credentials, _project = google.auth.default(scopes=[GOOGLE_CLOUD_PLATFORM_SCOPE])
        if token_request is None:
            import google.auth.transport.requests

            token_request = google.auth.transport.requests.Request()
        self._credentials = credentials
        self._token_request = token_request
        self._lock = threading.Lock()

    def _access_token(self, force_refresh: bool = False) -> str:
        with self._lock:
            # ``valid`` is False when the token is missing or inside google-auth's expiry margin.
            if force_refresh or not self._credentials.valid:
                self._credentials.refresh(self._token_request)
            return self._credentials.token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._access_token()}"
        response = yield request
        if response.status_code == 401:
            # The token may have been revoked or expired early; one refresh, one more try.
            request.headers["Authorization"] = f"Bearer {self._access_token(force_refresh=True)}"
            yield request


def auth_from_settings(settings: Settings) -> httpx.Auth:
    if settings.fhir_auth == "none":
        return NoAuth()
    if settings.fhir_auth == "bearer":
        if settings.fhir_bearer_token is None:
            raise ValueError("fhir_auth=bearer needs DEDUP_FHIR_BEARER_TOKEN")
        return BearerAuth(settings.fhir_bearer_token)
    if settings.fhir_auth == "google":
        return GoogleAuth()
    raise ValueError(f"unknown fhir_auth {settings.fhir_auth!r}")
