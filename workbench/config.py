"""The workbench's own settings (``DEDUP_WORKBENCH_*``), wired by infra/modules/workbench.

Production sits behind Identity-Aware Proxy: every request carries IAP's signed header, verified
against ``iap_audience``; users get a role from ``roles`` (e-mail -> viewer | reviewer | supervisor),
anyone else is refused. ``mode = "local"`` allows the development sign-in instead, and only while the
process talks to the emulators (``FIRESTORE_EMULATOR_HOST`` set).
"""

from __future__ import annotations

import os
import secrets
from enum import IntEnum
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Role(IntEnum):
    """Each role can do what the ones below it can."""
    VIEWER = 1        # queue, items (NIK masked), merges, dashboard
    REVIEWER = 2      # + decide, not sure, undo, reveal a NIK
    SUPERVISOR = 3    # + unmerge

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.strip().upper()]


# IAP's public keys and the issuer of its signed header (cloud.google.com/iap/docs/signed-headers-howto).
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_HEADER = "x-goog-iap-jwt-assertion"


class WorkbenchConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEDUP_WORKBENCH_", frozen=True, extra="ignore")

    mode: Literal["production", "local"] = "production"
    # IAP directly on Cloud Run: /projects/NUMBER/locations/REGION/services/NAME (Terraform sets it).
    iap_audience: str = ""
    iap_certs_url: str = IAP_CERTS_URL
    # e-mail -> role name; JSON in the environment ({"a@dinkes.go.id": "reviewer", ...}).
    roles: dict[str, str] = Field(default_factory=dict)
    # Signs the session cookie (CSRF token, language, flash messages). Secret Manager in production;
    # locally a fresh random key per process.
    secret_key: SecretStr = SecretStr("")
    default_language: Literal["id", "en"] = "id"
    page_size: int = 50

    def role_of(self, email: str) -> Role | None:
        name = {k.lower(): v for k, v in self.roles.items()}.get(email.lower())
        return Role.named(name) if name else None

    def session_key(self) -> str:
        key = self.secret_key.get_secret_value()
        if not key and self.mode == "production":
            raise RuntimeError("DEDUP_WORKBENCH_SECRET_KEY is required in production")
        return key or secrets.token_hex(32)


def local_stack_in_use() -> bool:
    """The development sign-in exists only against the emulators (never a real Firestore)."""
    return bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
