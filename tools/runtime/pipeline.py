"""The functions running locally the way Eventarc runs them in Google Cloud.

Each Cloud Function runs in its own `functions-framework` process. Every trigger topic gets a
subscription with the retry and dead-letter policies the Terraform module gives the real ones, and a
delivery loop that does what Pub/Sub push does: it POSTs the push body (`{"message": ...,
"subscription": ...}`) to the function, acks on 2xx and nacks otherwise, so Pub/Sub redelivers with
backoff and dead-letters after the maximum attempts. (The emulator can push by itself, but then nobody
can tell when a message is still on its way; the loop counts what is in flight, which is how the main
job knows the pipeline is quiet.) A rest-hook `Subscription` on the FHIR server calls the relay
function, which publishes to patient-changes: the path a district running HAPI FHIR uses.

The stack (emulators, FHIR server) is started by `tools.runtime.stack`; this module only adds the functions.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from shared.config import Settings
from tools.runtime.stack import ManagedProcess, free_port, launch

REPO = Path(__file__).resolve().parents[2]
# The deployed functions, one list shared with infra/modules/district (see its "about").
FUNCTIONS_FILE = REPO / "functions" / "functions.json"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    target: str
    signature: str  # "cloudevent" or "http"
    trigger_topic_field: str | None  # Settings field naming the trigger topic


def load_function_specs(path: Path = FUNCTIONS_FILE) -> tuple[FunctionSpec, ...]:
    """The functions of ``functions/functions.json``, in its order. A topic trigger runs as a CloudEvent
    function; its topic is read from the Settings field ``topic_<topic with - as _>``, whose default is
    that topic (so a ``DEDUP_TOPIC_*`` override moves the local subscription with it)."""
    specs = []
    for entry in json.loads(path.read_text())["functions"]:
        trigger = entry["trigger"]
        if trigger == "http":
            specs.append(FunctionSpec(entry["name"], entry["entry_point"], "http", None))
            continue
        field_name = "topic_" + trigger.replace("-", "_")
        if Settings.model_fields.get(field_name) is None or Settings.model_fields[field_name].default != trigger:
            raise ValueError(f"{path}: {entry['name']}: no Settings field {field_name} defaulting to {trigger!r}")
        specs.append(FunctionSpec(entry["name"], entry["entry_point"], "cloudevent", field_name))
    return tuple(specs)


FUNCTIONS: tuple[FunctionSpec, ...] = load_function_specs()

# As in infra/modules/pubsub_function (shorter backoff locally so tests converge quickly): after this
# many deliveries a message goes to the dead-letter topic.
MAX_DELIVERY_ATTEMPTS = 10
RETRY_MIN_BACKOFF_S = 1
RETRY_MAX_BACKOFF_S = 10
ACK_DEADLINE_S = 300
# Pause after an empty pull, doubling while the subscription stays empty (at most the maximum:
# the extra delay a message arriving at an idle subscription can see).
EMPTY_PULL_PAUSE_S = 0.05
MAX_EMPTY_PULL_PAUSE_S = 0.4


def dead_letter_topic(topic: str) -> str:
    return f"{topic}-dead-letter"


@dataclass
class RunningFunction:
    spec: FunctionSpec
    process: ManagedProcess  # started through tools.runtime.stack, so it is cleaned up like the stack's servers

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DeliveryStats:
    delivered: int = 0
    acked: int = 0
    nacked: int = 0
    in_flight: int = 0
    handling: int = 0     # POSTs the function has not answered yet (it is working on them now)
    last_activity: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class DeliveryChaos:
    """At-least-once delivery at its worst, for the chaos run: each message is POSTed 1..``max_copies``
    times, each copy after a random pause of up to ``max_delay_s`` (so messages overtake each other);
    it is acked only if every copy succeeded, else nacked (and redelivered, copies again)."""
    max_copies: int = 3
    max_delay_s: float = 1.0
    seed: int = 0


class _DeliveryLoop:
    """Pulls one trigger subscription and POSTs each message to its function as Pub/Sub push would."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscription: str, endpoint: str,
                 concurrency: int, stats: DeliveryStats, lock: threading.Lock, chaos: DeliveryChaos | None = None):
        self._subscriber = subscriber
        self._subscription = subscription
        self._endpoint = endpoint
        self._stats = stats
        self._lock = lock
        self._stop = threading.Event()
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"push-{subscription[-20:]}")
        self._http = httpx.Client(timeout=ACK_DEADLINE_S)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._chaos = chaos
        self._random = random.Random(f"{chaos.seed if chaos else 0}-{subscription}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _run(self) -> None:
        idle_pause = EMPTY_PULL_PAUSE_S
        while not self._stop.is_set():
            free = 0
            while self._slots.acquire(blocking=False):
                free += 1
            if not free:
                time.sleep(0.02)
                continue
            try:
                response = self._subscriber.pull(
                    request={"subscription": self._subscription, "max_messages": free}, timeout=1.0)
                received = list(response.received_messages)
            except (gexc.DeadlineExceeded, gexc.RetryError, gexc.ServiceUnavailable):
                received = []
            for _ in range(free - len(received)):
                self._slots.release()
            if not received:
                # The emulator answers an empty pull at once: back off so idle subscriptions do not
                # spin (they cost the emulator and this process CPU the functions need).
                time.sleep(idle_pause)
                idle_pause = min(idle_pause * 2, MAX_EMPTY_PULL_PAUSE_S)
                continue
            idle_pause = EMPTY_PULL_PAUSE_S
            with self._lock:
                self._stats.in_flight += len(received)
                self._stats.last_activity = time.monotonic()
            for message in received:
                self._pool.submit(self._deliver, message)

    def _deliver(self, received) -> None:
        message = received.message
        body = {
            "subscription": self._subscription,
            "message": {
                "data": base64.b64encode(message.data).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
                "publishTime": message.publish_time.isoformat(),
            },
            "deliveryAttempt": received.delivery_attempt,
        }
        copies = self._random.randint(1, self._chaos.max_copies) if self._chaos else 1
        ok = True
        for _ in range(copies):
            if self._chaos:
                time.sleep(self._random.uniform(0, self._chaos.max_delay_s))
            with self._lock:
                self._stats.handling += 1
            try:
                ok = self._http.post(self._endpoint, json=body).status_code < 300 and ok
            except httpx.HTTPError:
                ok = False
            finally:
                with self._lock:
                    self._stats.handling -= 1
        try:
            if ok:
                self._subscriber.acknowledge(request={"subscription": self._subscription,
                                                      "ack_ids": [received.ack_id]})
            else:
                # A nack: Pub/Sub redelivers after the retry policy's backoff, then dead-letters.
                self._subscriber.modify_ack_deadline(request={"subscription": self._subscription,
                                                              "ack_ids": [received.ack_id], "ack_deadline_seconds": 0})
        finally:
            with self._lock:
                self._stats.delivered += 1
                self._stats.acked += ok
                self._stats.nacked += not ok
                self._stats.in_flight -= 1
                self._stats.last_activity = time.monotonic()
            self._slots.release()


@dataclass
class LocalPipeline:
    """Starts the functions and wires topics to them. `env` is the stack's environment
    (emulator hosts, FHIR base URL, project id)."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    threads_per_function: int = 8
    register_fhir_subscription: bool = True
    chaos: DeliveryChaos | None = None
    # Subscriptions on the clinical types too (the live late-reference fix); False leaves late references
    # to reconcile, as for a district whose FHIR server notifies about patients only.
    clinical_subscriptions: bool = True
    functions: dict[str, RunningFunction] = field(default_factory=dict)
    stats: dict[str, DeliveryStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._loops: list[_DeliveryLoop] = []
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        # Restarted functions are launched from this pipeline-long thread: a process gets SIGTERM when
        # the thread that started it ends (tools.runtime.stack.launch), so a restart from a caller's
        # short-lived thread (the chaos run's killer) would die with that thread.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="function-launcher")
        # The relay's shared secret for this run (the FHIR server's Subscription sends it): the local
        # stack authenticates its rest-hook like a district without ID tokens does, with no built-in value.
        self.relay_secret = secrets.token_urlsafe(32)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> LocalPipeline:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in FUNCTIONS:
                self.functions[spec.name] = self._launch(spec)
            for name, running in list(self.functions.items()):
                self.functions[name] = self._listening(running)
            self._create_topics_and_subscriptions()
            self._start_delivery()
            if self.register_fhir_subscription:
                self._register_fhir_subscription()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        self._loops.clear()
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None
        for running in self.functions.values():
            running.process.terminate()
        for running in self.functions.values():
            running.process.stop()
        self.functions.clear()
        self._launcher.shutdown(wait=True)

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def relay_url(self) -> str:
        return self.functions["subscription-relay"].url

    def kill_and_restart(self, name: str) -> None:
        """SIGKILLs a function's process group (whatever it was doing) and starts it again on the same
        port; deliveries meanwhile fail and are redelivered."""
        running = self.functions[name]
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.popen.wait(timeout=10)
        running.process.stop()
        self.functions[name] = self._listening(self._launch(running.spec, running.port))

    @property
    def patient_merge_url(self) -> str:
        return self.functions["patient-merge"].url

    def pids(self) -> dict[str, int]:
        return {name: f.process.pid for name, f in self.functions.items()}

    # --- quiet detection -----------------------------------------------------------------------
    def in_flight(self) -> int:
        with self._lock:
            return sum(s.in_flight for s in self.stats.values())

    def wait_until_quiet(self, *, busy_check=None, idle_seconds: float = 2.0, timeout: float = 600.0,
                         on_tick=None) -> float:
        """Waits until no message has been pulled or delivered for `idle_seconds` (and at least that
        long after the call), none is in flight, and `busy_check()` (e.g. open merge work in
        Firestore) is false. Returns the seconds waited."""
        start = time.monotonic()
        while True:
            time.sleep(0.25)
            for running in self.functions.values():
                if not running.process.alive():
                    raise RuntimeError(f"function {running.spec.name} exited; see {running.log_path}")
            if on_tick:
                on_tick()
            with self._lock:
                # Counted from the call at the earliest: a message published just before it may not
                # have been pulled yet (an idle loop pauses up to MAX_EMPTY_PULL_PAUSE_S between pulls).
                last = max([start, *(s.last_activity for s in self.stats.values())])
                in_flight = sum(s.in_flight for s in self.stats.values())
            now = time.monotonic()
            if in_flight == 0 and now - last >= idle_seconds and not (busy_check and busy_check()):
                return now - start
            if now - start > timeout:
                raise TimeoutError(f"pipeline still busy after {timeout:.0f} s ({in_flight} in flight)")

    # --- internals -----------------------------------------------------------------------------
    def _launch(self, spec: FunctionSpec, port: int | None = None) -> RunningFunction:
        """Starts the function's process from the launcher thread (lives as long as the pipeline)."""
        return self._launcher.submit(self._start_function, spec, port).result()

    def _listening(self, running: RunningFunction, attempts: int = 3) -> RunningFunction:
        """Waits until the function listens; one that died at start is started again (on its port).
        Seen in test runs and in the chaos run's restarts under load: gRPC's poller died on a bad
        descriptor while the worker process started, before any request; a new start is independent."""
        for attempt in range(attempts):
            try:
                _wait_until_listening(running)
                return running
            except FunctionDiedAtStart:
                if attempt == attempts - 1:
                    raise
                running.process.stop()
                running = self._launch(running.spec, running.port)
        return running

    def _start_function(self, spec: FunctionSpec, port: int | None = None) -> RunningFunction:
        port = port or free_port()
        log_path = self.log_dir / f"{spec.name}.log"
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": str(REPO),
            "DEDUP_ENVIRONMENT": "local",
            "DEDUP_RELAY_SHARED_SECRET": self.relay_secret,
            "THREADS": str(self.threads_per_function),
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [
            sys.executable, "-m", "functions_framework",
            "--source", str(REPO / "functions" / "main.py"),
            "--target", spec.target,
            "--signature-type", spec.signature,
            "--host", "127.0.0.1", "--port", str(port),
        ]
        return RunningFunction(spec, launch(spec.name, cmd, port, log_path, cwd=REPO, env=env))

    def _trigger_topics(self) -> list[tuple[FunctionSpec, str]]:
        return [(spec, getattr(self.settings, spec.trigger_topic_field))
                for spec in FUNCTIONS if spec.trigger_topic_field is not None]

    def _create_topics_and_subscriptions(self) -> None:
        publisher = pubsub_v1.PublisherClient()
        self._subscriber = pubsub_v1.SubscriberClient()
        project = self.settings.project_id
        for spec, topic in self._trigger_topics():
            for name in (topic, dead_letter_topic(topic)):
                try:
                    publisher.create_topic(name=publisher.topic_path(project, name))
                except gexc.AlreadyExists:
                    pass
            request = {
                "name": self._subscriber.subscription_path(project, f"{spec.name}-trigger"),
                "topic": publisher.topic_path(project, topic),
                "ack_deadline_seconds": ACK_DEADLINE_S,
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=RETRY_MIN_BACKOFF_S),
                    "maximum_backoff": duration_pb2.Duration(seconds=RETRY_MAX_BACKOFF_S),
                },
                "dead_letter_policy": {
                    "dead_letter_topic": publisher.topic_path(project, dead_letter_topic(topic)),
                    "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
                },
            }
            try:
                self._subscriber.create_subscription(request=request)
            except gexc.AlreadyExists:
                pass
            # A subscription on each dead-letter topic keeps what failed for inspection.
            try:
                self._subscriber.create_subscription(
                    name=self._subscriber.subscription_path(project, f"{dead_letter_topic(topic)}-hold"),
                    topic=publisher.topic_path(project, dead_letter_topic(topic)))
            except gexc.AlreadyExists:
                pass
        # Malformed messages are kept on the quarantine topic (functions/_delivery.py), held as in infra/.
        quarantine = self.settings.topic_quarantine
        for create in (lambda: publisher.create_topic(name=publisher.topic_path(project, quarantine)),
                       lambda: self._subscriber.create_subscription(
                           name=self._subscriber.subscription_path(project, f"{quarantine}-hold"),
                           topic=publisher.topic_path(project, quarantine))):
            try:
                create()
            except gexc.AlreadyExists:
                pass

    def _start_delivery(self) -> None:
        project = self.settings.project_id
        for spec, topic in self._trigger_topics():
            self.stats[spec.name] = DeliveryStats()
            loop = _DeliveryLoop(
                self._subscriber, self._subscriber.subscription_path(project, f"{spec.name}-trigger"),
                f"{self.functions[spec.name].url}/projects/{project}/topics/{topic}",
                self.threads_per_function, self.stats[spec.name], self._lock, self.chaos)
            loop.start()
            self._loops.append(loop)

    def _register_fhir_subscription(self) -> None:
        """Rest-hook Subscriptions calling the relay with the relay's secret, carrying the full resource:
        one on every Patient write (matching), one per clinical type that can reference a patient (the
        live late-reference fix; R4 criteria name one type each)."""
        from shared.fhir.compartment import AUDIT_TYPES, reference_search_plan

        capability = httpx.get(f"{self.settings.fhir_base_url}/metadata", timeout=30).json()
        plan, _ = reference_search_plan(capability)
        clinical = sorted(set(plan) - AUDIT_TYPES - {"Patient", "Task"}) if self.clinical_subscriptions else []
        for resource_type in ["Patient", *clinical]:
            subscription = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": f"Patient deduplication: relay {resource_type} changes to Pub/Sub",
                "criteria": f"{resource_type}?",
                "channel": {
                    "type": "rest-hook",
                    "endpoint": self.relay_url,
                    "payload": "application/fhir+json",
                    "header": [f"Authorization: Bearer {self.relay_secret}"],
                },
            }
            response = httpx.post(f"{self.settings.fhir_base_url}/Subscription", json=subscription, timeout=30,
                                  headers={"Content-Type": "application/fhir+json"})
            response.raise_for_status()

    def dead_letter_counts(self) -> dict[str, int]:
        """How many messages each dead-letter topic holds (pulled and released again)."""
        counts: dict[str, int] = {}
        subscriber = self._subscriber
        for _spec, topic in self._trigger_topics():
            sub = subscriber.subscription_path(self.settings.project_id, f"{dead_letter_topic(topic)}-hold")
            try:
                response = subscriber.pull(request={"subscription": sub, "max_messages": 1000}, timeout=2)
                received = list(response.received_messages)
            except (gexc.DeadlineExceeded, gexc.RetryError):
                received = []
            counts[topic] = len(received)
            if received:
                subscriber.modify_ack_deadline(request={"subscription": sub, "ack_ids": [m.ack_id for m in received],
                                                        "ack_deadline_seconds": 0})
        return counts


class FunctionDiedAtStart(RuntimeError):
    """A function's process exited before it listened."""


def _wait_until_listening(running: RunningFunction, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.process.alive():
            raise FunctionDiedAtStart(f"{running.spec.name} failed to start; see {running.log_path}:\n"
                                      + running.process.log_tail())
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{running.spec.name} did not listen on port {running.port} within {timeout:.0f} s")
