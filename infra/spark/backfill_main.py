"""The Dataproc Serverless batch's main file (infra/modules/backfill_spark): the NIK key from Secret Manager
into the environment, then the ops CLI with the batch's arguments (``backfill --engine spark ...``).

The key's version is named by DEDUP_NIK_HASH_KEY_SECRET_VERSION (pinned); it is read with the batch's
own service account and never written to the batch's properties or logs.
"""

from __future__ import annotations

import base64
import os
import sys


def _nik_key_from_secret_manager() -> None:
    version = os.environ.pop("DEDUP_NIK_HASH_KEY_SECRET_VERSION", None)
    if not version or os.environ.get("DEDUP_NIK_HASH_KEY"):
        return
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    response = AuthorizedSession(credentials).get(f"https://secretmanager.googleapis.com/v1/{version}:access",
                                                  timeout=30)
    response.raise_for_status()
    os.environ["DEDUP_NIK_HASH_KEY"] = base64.b64decode(response.json()["payload"]["data"]).decode()


if __name__ == "__main__":
    _nik_key_from_secret_manager()
    from ops.cli import entry_point

    sys.argv = ["dedup", *sys.argv[1:]]
    entry_point()
