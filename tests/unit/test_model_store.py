"""The model store port (shared/ports/model_store.py) over its adapters and the fake, and the registry over
it (shared/services/models.py): versions written once and never replaced, a pointer that moves only on a
promote (compare-and-set), the current model loaded with its size and load time logged, the shipped default
while a district has none, a promoted version reaching a running process.

The Cloud Storage adapter runs against gcp-storage-emulator with the real google-cloud-storage client. That
emulator ignores generation preconditions, so "a version is never overwritten" and "a racing promote
fails" are checked on the fake and the directory adapter only; in a district Cloud Storage enforces
``ifGenerationMatch`` and the retraining job's role (objectCreator) cannot overwrite at all
(tests/infra/test_model_training_job.py)."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from shared.linkage.model import default_model, default_model_artefact
from shared.linkage.versions import ModelInfo, stamped
from shared.ports.model_store import CurrentModel, CurrentModelMoved, ModelVersionExists, ModelVersionNotFound
from shared.services.models import CurrentModelCache, ModelRegistry, NoModelStore, UnusableModel
from tests.fakes import InMemoryModelStore

ARTEFACT = json.loads(default_model_artefact())
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs_emulator():
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _gcs_store(emulator_url: str, monkeypatch, bucket: str):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from shared.adapters.model_store_gcs import GcsModelStore

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
    client = storage.Client(project="district", credentials=AnonymousCredentials())
    client.create_bucket(bucket)
    return GcsModelStore(client, bucket, "models/")


@pytest.fixture(params=["memory", "directory", "gcs"])
def store(request, tmp_path, monkeypatch):
    if request.param == "memory":
        return InMemoryModelStore()
    if request.param == "directory":
        from shared.adapters.model_store_files import FileModelStore

        return FileModelStore(tmp_path / "models")
    emulator = request.getfixturevalue("gcs_emulator")
    return _gcs_store(emulator, monkeypatch, f"models-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["memory", "directory"])
def enforcing_store(request, tmp_path):
    """The adapters whose backend enforces write-once and compare-and-set here (see the module docstring)."""
    if request.param == "memory":
        return InMemoryModelStore()
    from shared.adapters.model_store_files import FileModelStore

    return FileModelStore(tmp_path / "models")


# --- the port ---------------------------------------------------------------------------------------------
def test_an_empty_store_has_no_version_and_no_current_model(store):
    assert store.versions() == [] and store.current() is None
    with pytest.raises(ModelVersionNotFound):
        store.read("20261130-080000-000000000000")


def test_versions_are_stored_listed_and_read_back(store):
    store.add("v2", b'{"two": 2}')
    store.add("v1", b'{"one": 1}')
    assert store.versions() == ["v1", "v2"]
    assert store.read("v1") == b'{"one": 1}' and store.read("v2") == b'{"two": 2}'


def test_the_pointer_moves_only_from_the_version_the_caller_saw(store):
    store.add("v1", b"{}")
    store.add("v2", b"{}")
    store.move_current(CurrentModel("v1", "a@x", "2026-11-30T08:00:00+00:00"), expected=None)
    assert store.current() == CurrentModel("v1", "a@x", "2026-11-30T08:00:00+00:00")
    with pytest.raises(CurrentModelMoved):   # someone promoted meanwhile: nothing changes
        store.move_current(CurrentModel("v2", "b@x", "2026-11-30T09:00:00+00:00"), expected=None)
    assert store.current().version == "v1"
    store.move_current(CurrentModel("v2", "b@x", "2026-11-30T09:00:00+00:00", "v1"), expected="v1")
    assert store.current().version == "v2" and store.current().previous == "v1"
    assert store.read("v1") == b"{}"   # a promote changes no version


def test_names_that_are_not_version_names_are_refused(store):
    for name in ("../current", "a/b", "", ".hidden", "x" * 101):
        with pytest.raises(ValueError):
            store.add(name, b"{}")


def test_a_version_is_never_overwritten(enforcing_store):
    enforcing_store.add("v1", b'{"first": true}')
    with pytest.raises(ModelVersionExists):
        enforcing_store.add("v1", b'{"second": true}')
    assert enforcing_store.read("v1") == b'{"first": true}'


# --- versions -------------------------------------------------------------------------------------------
def test_a_version_is_named_by_its_time_and_content():
    version, data = stamped(ARTEFACT, created_by="ops@district", created_at=T0)
    assert version.startswith("20261130-080000-") and len(version) == len("20261130-080000-") + 12
    doc = json.loads(data)
    assert doc["version"] == version and doc["trained_on"]["created_by"] == "ops@district"
    assert stamped(ARTEFACT, created_by="ops@district", created_at=T0)[0] == version      # same content, same name
    other = ARTEFACT | {"prior_weight": ARTEFACT["prior_weight"] + 1}
    assert stamped(other, created_by="ops@district", created_at=T0)[0] != version       # other content, other name
    info = ModelInfo.of(version, data)
    assert (info.created_by, info.patients, info.size_bytes) == ("ops@district", 20000, len(data))


# --- the registry -----------------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        self.now += timedelta(minutes=1)
        return self.now


def registry_over(store) -> ModelRegistry:
    return ModelRegistry(store, clock=Clock())


def _weights(artefact: dict, value: float) -> dict:
    """The artefact with every non-null level's match weight set to ``value``: a model that decides differently."""
    comparisons = [{**c, "levels": [{**level, "match_weight": 0.0 if level["m"] is None else value}
                                    for level in c["levels"]]} for c in artefact["comparisons"]]
    return artefact | {"comparisons": comparisons}


def test_a_district_without_a_store_or_a_promoted_version_decides_with_the_shipped_model():
    assert ModelRegistry(None).current_model() == default_model()
    registry = registry_over(InMemoryModelStore())
    registry.add(ARTEFACT, created_by="ops@district")   # stored, not promoted
    assert registry.current_model() == default_model()
    with pytest.raises(NoModelStore):
        ModelRegistry(None).add(ARTEFACT, created_by="x")


def test_adding_stores_a_new_version_and_leaves_the_current_model():
    store = InMemoryModelStore()
    registry = registry_over(store)
    first = registry.add(ARTEFACT, created_by="ops@district")
    registry.promote(first.version, promoted_by="lead@district")
    second = registry.add(_weights(ARTEFACT, 1.0), created_by="job:retrain")
    assert store.versions() == sorted([first.version, second.version]) and first.version < second.version
    assert registry.current_version() == first.version
    listing = [(info.version, info.created_by, current) for info, current in registry.listing()]
    assert listing == [(first.version, "ops@district", True), (second.version, "job:retrain", False)]


def test_promote_moves_the_pointer_and_keeps_who_and_what_it_replaced():
    store = InMemoryModelStore()
    registry = registry_over(store)
    a, b = (registry.add(_weights(ARTEFACT, w), created_by="x").version for w in (1.0, 2.0))
    registry.promote(a, promoted_by="lead@district")
    pointer = registry.promote(b, promoted_by="boss@district")
    assert (pointer.version, pointer.previous, pointer.promoted_by) == (b, a, "boss@district")
    assert registry.promote(b, promoted_by="again@district") == pointer   # already current: nothing moves
    assert [p.version for p in store.pointer_history] == [a, b]
    assert registry.current_model().version == b
    with pytest.raises(ModelVersionNotFound):
        registry.promote("20990101-000000-000000000000", promoted_by="x")


def test_a_version_this_code_cannot_evaluate_is_never_promoted():
    store = InMemoryModelStore()
    registry = registry_over(store)
    good = registry.add(ARTEFACT, created_by="x").version
    registry.promote(good, promoted_by="x")
    name, *others = ARTEFACT["comparisons"]
    other_levels = dict(ARTEFACT, comparisons=[{**name, "levels": name["levels"][:-1]}, *others])
    version, data = stamped(other_levels, created_by="x", created_at=T0)
    store.add(version, data)   # written by other code: the registry itself refuses to add it
    with pytest.raises(UnusableModel):
        registry.promote(version, promoted_by="x")
    assert registry.current_version() == good
    with pytest.raises(UnusableModel):
        registry.add(other_levels, created_by="x")


def test_loading_logs_version_size_and_time_and_falls_back_when_the_current_version_is_unusable():
    store = InMemoryModelStore()
    registry = registry_over(store)
    version = registry.add(_weights(ARTEFACT, 3.0), created_by="x").version
    registry.promote(version, promoted_by="x")
    with capture_logs() as logs:
        model, pointer = registry.load_current()
    assert model.version == pointer == version
    [loaded] = [entry for entry in logs if entry["event"] == "model_loaded"]
    assert loaded["model_version"] == version and loaded["source"] == "store"
    assert loaded["size_bytes"] == len(store.read(version)) and loaded["load_ms"] >= 0
    store.objects[version] = b'{"format": "something else"}'   # a pointer to what this code cannot read
    with capture_logs() as logs:
        assert registry.current_model() == default_model()
    assert [e["event"] for e in logs] == ["model_unusable_default_used", "model_loaded"]
    assert logs[1]["source"] == "default" and logs[1]["size_bytes"] == len(default_model_artefact())


def test_a_running_process_picks_a_promoted_version_up_after_its_refresh_interval():
    store = InMemoryModelStore()
    registry = registry_over(store)
    a, b = (registry.add(_weights(ARTEFACT, w), created_by="x").version for w in (1.0, 2.0))
    registry.promote(a, promoted_by="x")
    now = [0.0]
    current = CurrentModelCache(registry, refresh_seconds=300, clock=lambda: now[0])
    assert current().version == a
    registry.promote(b, promoted_by="x")
    now[0] = 299.0
    assert current().version == a           # within the interval: the pointer is not read again
    now[0] = 300.0
    assert current().version == b


@pytest.mark.parametrize("failing", ["current", "read"])
def test_an_unreadable_store_keeps_the_loaded_model(failing):
    class Failing(InMemoryModelStore):
        fail = False

        def current(self):
            if self.fail and failing == "current":
                raise ConnectionError("store unreachable")
            return super().current()

        def read(self, version):
            if self.fail and failing == "read":
                raise ConnectionError("store unreachable")
            return super().read(version)

    store = Failing()
    registry = registry_over(store)
    version = registry.add(ARTEFACT, created_by="x").version
    registry.promote(version, promoted_by="x")
    now = [0.0]
    current = CurrentModelCache(registry, refresh_seconds=1, clock=lambda: now[0])
    assert current().version == version
    newer = registry.add(_weights(ARTEFACT, 2.0), created_by="x").version
    registry.promote(newer, promoted_by="x")
    store.fail, now[0] = True, 10.0
    assert current().version == version                 # the loaded model goes on deciding
    store.fail, now[0] = False, 20.0
    assert current().version == newer                   # and the promoted one is loaded once the store answers


def test_the_store_setting_is_a_bucket_url_or_a_directory():
    from pydantic import ValidationError

    from shared.adapters.model_store_gcs import parse_bucket_url
    from shared.config import Settings

    assert parse_bucket_url(Settings(model_store="gs://district-dedup-models/v1/").model_store) == (
        "district-dedup-models", "v1/")
    assert Settings(model_store=".stack/models").model_store == ".stack/models"
    for wrong in ("gs://", "gs://Upper_Case", "gs://x"):
        with pytest.raises(ValidationError):
            Settings(model_store=wrong)
