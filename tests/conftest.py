"""Shared fixtures: one local stack per test session, one Google project per test.

Isolation: the emulators and the FHIR server start once per session (lazily: a run of unit tests
alone starts nothing). Every test that asks for ``settings`` gets its own project id
``test-<random>``, which separates Firestore documents and Pub/Sub topics without wiping anything.
FHIR data is shared by the session's server; a test module that needs an empty store marks itself::

    pytestmark = pytest.mark.fresh_fhir      # settings/fhir in this module use a new, empty server

(or asks for the ``fresh_fhir`` fixture directly for the server handle). Files under
``tests/integration`` are marked ``integration`` automatically.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests run with the local stack's development defaults (the NIK key, no relay secret): a process that
# does not say it is local refuses them (shared/config.py). Set before any test module builds Settings().
os.environ.setdefault("DEDUP_ENVIRONMENT", "local")

from shared.config import Settings, get_settings  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
_STACK_TIMINGS = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fresh_fhir: the module's settings/fhir use a new, empty FHIR server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration_dir = TESTS_DIR / "integration"
    for item in items:
        if integration_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Unit tests stay server-free; a fixture chain that reaches the stack is a misplaced test.
    if TESTS_DIR / "unit" in Path(item.path).parents and "stack" in getattr(item, "fixturenames", ()):
        pytest.fail("unit tests must not use the local stack (settings/fhir/firestore_db/... need it); "
                    "move the test to tests/integration or build Settings(...) directly", pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    timings = config.stash.get(_STACK_TIMINGS, None)
    if timings:
        parts = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items())
        terminalreporter.write_line(f"local stack start-up: {parts}")


@pytest.fixture(autouse=True)
def _logging_as_the_functions_configure_it():
    """A command-line tool run in-process switches logging to terminal output; later tests (which
    capture the functions' log events) get the functions' configuration back."""
    yield
    from shared.logging import reset_after_terminal_output

    reset_after_terminal_output()


# --------------------------------------------------------------------------------------------
# the stack and the FHIR server


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest):
    """The running local stack; its emulator hosts are in ``os.environ`` for the whole session."""
    import shared.adapters.firestore as firestore_adapter
    import shared.adapters.pubsub as pubsub_adapter
    from tools.runtime.stack import LocalStack

    began = time.monotonic()
    local = LocalStack().start()
    timings = dict(local.startup_seconds)
    timings["total"] = time.monotonic() - began
    request.config.stash[_STACK_TIMINGS] = timings
    patch = pytest.MonkeyPatch()
    for key in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        patch.setenv(key, local.env[key])
    # Clients cached before the emulator variables existed would talk to the real services.
    firestore_adapter._client.cache_clear()
    pubsub_adapter._publisher_client.cache_clear()
    try:
        yield local
    finally:
        firestore_adapter._client.cache_clear()
        pubsub_adapter._publisher_client.cache_clear()
        patch.undo()
        local.stop()


@pytest.fixture(scope="module")
def fresh_fhir(stack):
    """A new, empty FHIR server for one test module (about a second to start)."""
    server = stack.start_fhir_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fhir_base_url(request: pytest.FixtureRequest, stack) -> str:
    """The session's FHIR server, or the module's own empty one under ``pytest.mark.fresh_fhir``.
    A module may also override this fixture."""
    if request.node.get_closest_marker("fresh_fhir"):
        return request.getfixturevalue("fresh_fhir").base_url
    return stack.fhir.base_url


# --------------------------------------------------------------------------------------------
# per-test project


@pytest.fixture
def settings(stack, fhir_base_url: str):
    """Settings for this test's own project and the module's FHIR server, also set as ``DEDUP_*``
    variables so code calling ``get_settings()`` sees the same values."""
    project_id = f"test-{uuid.uuid4().hex[:12]}"
    test_settings = Settings(project_id=project_id, fhir_base_url=fhir_base_url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEDUP_PROJECT_ID", project_id)
        patch.setenv("DEDUP_FHIR_BASE_URL", fhir_base_url)
        get_settings.cache_clear()
        yield test_settings
    get_settings.cache_clear()


@pytest.fixture
def fhir(settings):
    from shared.fhir.client import FhirClient

    with FhirClient(settings.fhir_base_url) as client:
        yield client


@pytest.fixture
def firestore_db(settings):
    from google.cloud import firestore

    client = firestore.Client(project=settings.project_id, database=settings.firestore_database)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def publisher(settings):
    from shared.adapters.pubsub import Publisher

    return Publisher(settings)


class PulledMessage(dict):
    """A message's decoded JSON body (it *is* the dict), plus its attributes and id."""

    def __init__(self, payload: dict, attributes: dict[str, str], message_id: str):
        super().__init__(payload)
        self.attributes = attributes
        self.message_id = message_id


@dataclass
class Topics:
    """Every topic in the settings, each with one pull subscription created before the test runs."""

    project_id: str
    names: list[str]
    publisher_client: object
    subscriber_client: object

    def path(self, name: str) -> str:
        return self.publisher_client.topic_path(self.project_id, name)

    def subscription(self, name: str) -> str:
        return self.subscriber_client.subscription_path(self.project_id, f"{name}-test-pull")

    def create(self) -> Topics:
        for name in self.names:
            self.publisher_client.create_topic(name=self.path(name))
            self.subscriber_client.create_subscription(name=self.subscription(name), topic=self.path(name),
                                                       ack_deadline_seconds=60)
        return self

    def pull(self, name: str, timeout: float = 5.0, max_messages: int = 100,
             count: int | None = 1) -> list[PulledMessage]:
        """Messages published to topic ``name`` since the last pull, acknowledged. Waits until at least
        ``count`` arrived (then collects stragglers briefly) or ``timeout`` passed; ``count=None``
        collects for the whole ``timeout`` (to show that nothing was published)."""
        from google.api_core import exceptions as api_exceptions

        if name not in self.names:
            raise KeyError(f"{name!r} is not a topic of these settings: {self.names}")
        subscription = self.subscription(name)
        messages: list[PulledMessage] = []
        deadline = time.monotonic() + timeout
        straggler_pulls = 0
        while len(messages) < max_messages:
            remaining = deadline - time.monotonic()
            satisfied = count is not None and len(messages) >= count
            if remaining <= 0 or (satisfied and straggler_pulls >= 1):
                break
            if satisfied:
                straggler_pulls += 1
            wait = 0.3 if satisfied else max(0.1, min(remaining, 1.0))
            try:
                response = self.subscriber_client.pull(
                    request={"subscription": subscription, "max_messages": max_messages - len(messages)},
                    timeout=wait)
            except (api_exceptions.DeadlineExceeded, api_exceptions.RetryError):
                continue
            if not response.received_messages:
                if not satisfied:
                    time.sleep(0.05)
                continue
            self.subscriber_client.acknowledge(request={
                "subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]})
            for received in response.received_messages:
                message = received.message
                messages.append(PulledMessage(json.loads(message.data.decode()), dict(message.attributes),
                                              message.message_id))
        return messages


@pytest.fixture
def topics(settings, stack):
    from google.cloud import pubsub_v1

    names = [getattr(settings, key) for key in Settings.model_fields if key.startswith("topic_")]
    publisher_client = pubsub_v1.PublisherClient()
    subscriber_client = pubsub_v1.SubscriberClient()
    try:
        yield Topics(settings.project_id, names, publisher_client, subscriber_client).create()
    finally:
        subscriber_client.close()
        publisher_client.stop()


@pytest.fixture
def fault_proxy(request: pytest.FixtureRequest):
    """Factory: ``fault_proxy(target_base_url=None, **options)`` starts a ``FaultProxy`` in front of
    the target (default: this module's FHIR server); all are stopped after the test."""
    from tools.runtime.fault_proxy import FaultProxy

    started: list[FaultProxy] = []

    def start(target_base_url: str | None = None, **options) -> FaultProxy:
        target = target_base_url or request.getfixturevalue("fhir_base_url")
        proxy = FaultProxy(target, **options).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()



# --------------------------------------------------------------------------------------------
# the browser (review workbench tests)


@pytest.fixture(scope="session")
def chromium():
    """(chromium, chromedriver) paths: Debian's packages, installed by apt-get when missing. An install
    that fails fails the test with apt's message; nothing is skipped."""
    from tests.browser import BrowserUnavailable, ensure_chromium

    try:
        return ensure_chromium()
    except BrowserUnavailable as error:
        pytest.fail(str(error), pytrace=False)
