"""Port: who is calling an HTTP entry point (the subscription relay). Adapters:
``shared.adapters.caller_auth`` (a Google-signed OIDC ID token, a shared secret, or either)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class CallerRejected(Exception):
    """The caller is not let in. ``reason`` is a short code for logs and metrics (never the token):
    missing-header, not-bearer, bad-secret, bad-token, expired-token, wrong-audience, unknown-caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Caller:
    """An accepted caller: ``principal`` is the service account email, or ``shared-secret``."""

    principal: str
    method: str  # "oidc" | "shared-secret"


class CallerVerifier(ABC):
    @abstractmethod
    def verify(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization`` header value; raises ``CallerRejected`` otherwise."""
