"""The district's matching model as a managed artefact: store a trained version, promote one, list them,
load the current one (``ModelStore`` port; docs/operations.md "The matching model").

Promoting changes which model decides *from then on*, nothing else: decisions already taken are never
re-decided (a human's reject stays in the group's ``do_not_match``, a done merge stays done; only a later
event of a record is decided again, by the rules first and then the current model). Every decision the
model makes stores its version in its evidence.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from shared.linkage.model import MatchModel, default_model, default_model_artefact
from shared.linkage.versions import ModelInfo, stamped
from shared.logging import get_logger
from shared.ports.model_store import CurrentModel, ModelStore, ModelVersionNotFound

log = get_logger(__name__)


class NoModelStore(RuntimeError):
    """The command needs a model store and none is configured."""


class UnusableModel(ValueError):
    """A stored version this code cannot evaluate (other comparisons or levels than the code's, or not a
    model artefact): it is refused by promote."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ModelRegistry:
    def __init__(self, store: ModelStore | None, *, clock: Callable[[], datetime] = _utc_now):
        self.store = store
        self._clock = clock

    def required_store(self) -> ModelStore:
        if self.store is None:
            raise NoModelStore("no model store is configured (DEDUP_MODEL_STORE: gs://<bucket> or a directory)")
        return self.store

    def describe(self) -> str:
        return self.store.describe() if self.store else "none (the shipped default model)"

    # --- versions --------------------------------------------------------------------------------------
    def add(self, artefact: dict, *, created_by: str) -> ModelInfo:
        """Stores a trained artefact as a new version (never replacing one); the current model stays."""
        version, data = stamped(artefact, created_by=created_by, created_at=self._clock())
        _parsed(version, data)
        self.required_store().add(version, data)
        log.info("model_version_added", model_version=version, size_bytes=len(data), created_by=created_by)
        return ModelInfo.of(version, data)

    def model(self, version: str) -> MatchModel:
        return _parsed(version, self.required_store().read(version))

    def listing(self) -> list[tuple[ModelInfo, bool]]:
        """Every version, oldest first, each with whether it is the current one."""
        store = self.required_store()
        current = store.current()
        return [(ModelInfo.of(v, store.read(v)), current is not None and current.version == v)
                for v in store.versions()]

    def promote(self, version: str, *, promoted_by: str) -> CurrentModel:
        """Makes ``version`` the current model (the pointer moves; no version changes). Promoting the
        current version again changes nothing."""
        store = self.required_store()
        self.model(version)   # stored and usable by this code, or refused here
        now = store.current()
        if now is not None and now.version == version:
            return now
        pointer = CurrentModel(version, promoted_by, self._clock().isoformat(timespec="seconds"),
                               now.version if now else None)
        store.move_current(pointer, expected=now.version if now else None)
        log.info("model_promoted", model_version=version, previous=pointer.previous, promoted_by=promoted_by)
        return pointer

    # --- the model that decides ----------------------------------------------------------------------
    def current_version(self) -> str | None:
        """The pointer's version (None: nothing promoted, or no store): one small read."""
        pointer = self.store.current() if self.store is not None else None
        return pointer.version if pointer else None

    def load_current(self) -> tuple[MatchModel, str | None]:
        """The current version's model and the pointer's version; the shipped default while the district
        has none (no store, or nothing promoted yet). Logs what was loaded, its size and how long it took
        (ids and figures only). A pointer to a version this code cannot evaluate falls back to the default
        with an error log (the version on every decision shows which model made it); a store that cannot
        be read raises (the event is redelivered)."""
        started = time.perf_counter()
        pointer = self.current_version()
        source, data = "default", default_model_artefact()
        model = default_model()
        if pointer is not None:
            try:
                stored = self.store.read(pointer)
                model, source, data = _parsed(pointer, stored), "store", stored
            except (UnusableModel, ModelVersionNotFound) as error:
                log.error("model_unusable_default_used", model_version=pointer, store=self.describe(),
                          error=str(error))
        log.info("model_loaded", model_version=model.version, source=source, store=self.describe(),
                 size_bytes=len(data), load_ms=round((time.perf_counter() - started) * 1000, 1))
        return model, pointer

    def current_model(self) -> MatchModel:
        return self.load_current()[0]


class CurrentModelCache:
    """One process's current model, for ``MatchingService``: loaded when the first decision needs it, then
    the pointer is read again at most every ``refresh_seconds`` and a promoted version loaded when it moved,
    so a promote reaches running instances within that time without a redeploy. A store that cannot be
    read then keeps the loaded model (logged, tried again after the interval); each event decides with one
    model."""

    def __init__(self, registry: ModelRegistry, refresh_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._model: MatchModel | None = None
        self._pointer: str | None = None
        self._checked = 0.0

    def __call__(self) -> MatchModel:
        with self._lock:
            now = self._clock()
            if self._model is None:
                self._model, self._pointer = self._registry.load_current()
                self._checked = now
            elif now - self._checked >= self._refresh:
                self._checked = now
                try:
                    if self._registry.current_version() != self._pointer:
                        self._model, self._pointer = self._registry.load_current()
                except Exception as error:  # noqa: BLE001 - the loaded model goes on deciding
                    log.warning("model_store_unreadable", model_version=self._model.version,
                                error=type(error).__name__)
            return self._model


def _parsed(version: str, data: bytes) -> MatchModel:
    try:
        model = MatchModel.from_json(data)
    except (ValueError, KeyError, TypeError) as error:
        raise UnusableModel(f"model version {version} cannot be used by this code: {error}") from None
    if model.version != version:
        raise UnusableModel(f"model version {version} names itself {model.version}")
    return model


def artefact_summary(artefact: dict) -> list[dict]:
    """m, u and match weight of every comparison level of an artefact (what training estimated)."""
    return [{"comparison": c["name"], "level": level["label"], "m": level.get("m"), "u": level.get("u"),
             "match_weight": level.get("match_weight")}
            for c in artefact["comparisons"] for level in c["levels"]]
