"""Who is asking, and what may they do: IAP's signed header in production, a development sign-in on
the local stack. No anonymous access: a request without an identity is refused (401), a known
identity without a role too (403)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import abort, current_app, g, redirect, request, session, url_for

from workbench.config import IAP_HEADER, IAP_ISSUER, Role, WorkbenchConfig, local_stack_in_use


@dataclass(frozen=True)
class User:
    email: str
    role: Role

    def can(self, role: Role) -> bool:
        return self.role >= role


class IapVerifier:
    """Verifies ``x-goog-iap-jwt-assertion`` (ES256, IAP's published keys, audience, issuer)."""

    def __init__(self, config: WorkbenchConfig):
        import google.auth.transport.requests
        import requests

        self._config = config
        # One HTTP session: google-auth caches IAP's keys by the response's Cache-Control.
        self._request = google.auth.transport.requests.Request(session=requests.Session())

    def email(self, assertion: str) -> str | None:
        from google.oauth2 import id_token

        if not self._config.iap_audience:
            return None
        try:
            claims = id_token.verify_token(assertion, self._request, audience=self._config.iap_audience,
                                           certs_url=self._config.iap_certs_url)
        except (ValueError, Exception):  # any malformed, expired or foreign token is simply no identity
            return None
        if claims.get("iss") != IAP_ISSUER or not claims.get("email"):
            return None
        return str(claims["email"])


def dev_sign_in_allowed(config: WorkbenchConfig) -> bool:
    return config.mode == "local" and local_stack_in_use()


def load_user() -> None:
    """Before each request: ``g.user`` or None."""
    config: WorkbenchConfig = current_app.config["WORKBENCH"]
    g.user = None
    if config.mode == "production":
        assertion = request.headers.get(IAP_HEADER)
        email = current_app.extensions["iap"].email(assertion) if assertion else None
        if email:
            role = config.role_of(email)
            g.user = User(email, role) if role else None
            g.identity = email
    elif dev_sign_in_allowed(config) and session.get("dev_user"):
        email = session["dev_user"]
        role = config.role_of(email)
        g.user = User(email, role) if role else None
        g.identity = email


def requires(role: Role):
    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            config: WorkbenchConfig = current_app.config["WORKBENCH"]
            if g.user is None:
                if getattr(g, "identity", None):
                    abort(403)
                if dev_sign_in_allowed(config):
                    return redirect(url_for("signin"))
                abort(401)
            if not g.user.can(role):
                abort(403)
            return view(*args, **kwargs)
        return guarded
    return decorate
