"""Point this process's Google clients at a running stack's emulators (used by ``compare`` and ``scale``)."""

from __future__ import annotations

import os


def emulator_env(stack) -> dict[str, str]:
    """Sets the emulator hosts of ``stack`` in this process's environment, drops the adapters' cached
    clients (so the next one talks to these emulators) and returns the stack's environment."""
    import shared.adapters.firestore as firestore_adapter
    import shared.adapters.pubsub as pubsub_adapter

    for key in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        os.environ[key] = stack.env[key]
    firestore_adapter._client.cache_clear()
    pubsub_adapter._publisher_client.cache_clear()
    return stack.env
