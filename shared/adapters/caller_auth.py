"""Adapters of ``shared.ports.callers.CallerVerifier`` for the subscription relay.

- ``GoogleIdTokenVerifier``: a Google-signed OIDC ID token (google-auth checks signature, expiry and
  issuer), whose audience is the relay's own URL and whose caller is a listed service account. The relay
  runs with Cloud Run's invoker check off (README "Infrastructure"): Cloud Run strips the signature of a
  token it verified itself, so the function has to be the one that verifies it.
- ``SharedSecretVerifier``: for FHIR servers that cannot mint ID tokens, ``Bearer <secret>`` compared
  in constant time with the secret from Secret Manager.
- ``EitherVerifier``: both configured; a JWT-shaped bearer goes to the token check, anything else to
  the secret, so the reason code says which check refused it.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterable

from google.auth import exceptions as google_exceptions
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

from shared.ports.callers import Caller, CallerRejected, CallerVerifier

# Google's keys overlap for days when they rotate; a few minutes of caching saves a certs fetch per call.
_CERTS_TTL_SECONDS = 300.0
_CLOCK_SKEW_SECONDS = 10


def bearer_value(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer <x>`` header; raises ``CallerRejected`` otherwise."""
    if not authorization or not authorization.strip():
        raise CallerRejected("missing-header")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise CallerRejected("not-bearer")
    return value.strip()


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2


class SharedSecretVerifier(CallerVerifier):
    def __init__(self, secret: str):
        if not secret:
            raise ValueError("the relay's shared secret is empty")
        self._secret = secret.encode()

    def verify(self, authorization: str | None) -> Caller:
        presented = bearer_value(authorization).encode()
        if not hmac.compare_digest(presented, self._secret):
            raise CallerRejected("bad-secret")
        return Caller(principal="shared-secret", method="shared-secret")


class _CachingRequest:
    """A google-auth transport whose GETs (the certs endpoint) are reused for ``ttl`` seconds."""

    def __init__(self, inner: Callable, ttl: float = _CERTS_TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._inner, self._ttl, self._clock = inner, ttl, clock
        self._cache: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", **kwargs):
        if method != "GET":
            return self._inner(url, method=method, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
            if hit and self._clock() - hit[0] < self._ttl:
                return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (self._clock(), response)
        return response


class GoogleIdTokenVerifier(CallerVerifier):
    """``request`` is a google-auth transport (tests pass one serving local certificates)."""

    def __init__(self, audience: str, allowed_callers: Iterable[str], request: Callable | None = None):
        self._audience = audience
        self._allowed = frozenset(email.strip().lower() for email in allowed_callers if email.strip())
        if not audience or not self._allowed:
            raise ValueError("the relay's OIDC check needs an audience and at least one allowed caller")
        self._request = _CachingRequest(request or google_requests.Request())

    def verify(self, authorization: str | None) -> Caller:
        token = bearer_value(authorization)
        try:
            # The audience is checked below rather than here, so a wrong one has its own reason code.
            claims = id_token.verify_oauth2_token(token, self._request, audience=None,
                                                  clock_skew_in_seconds=_CLOCK_SKEW_SECONDS)
        except google_exceptions.TransportError:
            raise  # Google's certs unreachable: not the caller's fault; a 5xx makes the server retry
        except (ValueError, google_exceptions.GoogleAuthError) as error:
            message = str(error).lower()
            raise CallerRejected("expired-token" if "expired" in message or "too late" in message
                                 else "bad-token") from None
        if claims.get("aud") != self._audience:
            raise CallerRejected("wrong-audience")
        email = str(claims.get("email") or "").lower()
        if claims.get("email_verified") is not True or email not in self._allowed:
            raise CallerRejected("unknown-caller")
        return Caller(principal=email, method="oidc")


class EitherVerifier(CallerVerifier):
    def __init__(self, token_verifier: CallerVerifier, secret_verifier: CallerVerifier):
        self._token, self._secret = token_verifier, secret_verifier

    def verify(self, authorization: str | None) -> Caller:
        value = bearer_value(authorization)
        return (self._token if _looks_like_jwt(value) else self._secret).verify(authorization)
