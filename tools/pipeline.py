"""The functions running locally the way Eventarc runs them in Google Cloud.

Each Cloud Function runs in its own `functions-framework` process. Every trigger topic gets a push
subscription aimed at its function (the emulator's push body is what Eventarc delivers, and
functions-framework turns it into the same CloudEvent), with the retry and dead-letter policies the
Terraform module gives the real subscriptions. A rest-hook `Subscription` on the FHIR server calls the
relay function, which publishes to patient-changes: the path a district running HAPI FHIR uses.

The stack (emulators, FHIR server) is started by `tools.stack`; this module only adds the functions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.protobuf import duration_pb2

from shared.config import Settings

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    target: str
    signature: str  # "cloudevent" or "http"
    trigger_topic_field: str | None  # Settings field naming the trigger topic


FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec("match-patient", "match_patient", "cloudevent", "topic_patient_changes"),
    FunctionSpec("force-merge", "force_merge", "cloudevent", "topic_ops_force_merge"),
    FunctionSpec("merge-fanout", "merge_fanout", "cloudevent", "topic_merge_requests"),
    FunctionSpec("merge-worker", "merge_worker", "cloudevent", "topic_merge_tasks"),
    FunctionSpec("merge-finaliser", "merge_finaliser", "cloudevent", "topic_merge_finalise"),
    FunctionSpec("subscription-relay", "subscription_relay", "http", None),
)

# Same values as infra/modules (subscriptions): after this many deliveries a message is dead-lettered.
MAX_DELIVERY_ATTEMPTS = 5
RETRY_MIN_BACKOFF_S = 1
RETRY_MAX_BACKOFF_S = 10
ACK_DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_letter_topic(topic: str) -> str:
    return f"{topic}-dead-letter"


@dataclass
class RunningFunction:
    spec: FunctionSpec
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class LocalPipeline:
    """Starts the functions and wires topics to them. `env` is the stack's environment
    (emulator hosts, FHIR base URL, project id)."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    threads_per_function: int = 8
    functions: dict[str, RunningFunction] = field(default_factory=dict)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "LocalPipeline":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for spec in FUNCTIONS:
                self.functions[spec.name] = self._start_function(spec)
            for running in self.functions.values():
                _wait_until_listening(running)
            self._create_topics_and_push_subscriptions()
            self._register_fhir_subscription()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for running in self.functions.values():
            if running.process.poll() is None:
                try:
                    os.killpg(running.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for running in self.functions.values():
            try:
                running.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait(timeout=5)
        self.functions.clear()

    def __enter__(self) -> "LocalPipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def relay_url(self) -> str:
        return self.functions["subscription-relay"].url

    # --- quiet detection -----------------------------------------------------------------------
    def log_sizes(self) -> dict[str, int]:
        return {name: f.log_path.stat().st_size for name, f in self.functions.items() if f.log_path.exists()}

    def wait_until_quiet(self, *, busy_check=None, idle_seconds: float = 4.0, timeout: float = 600.0,
                         on_tick=None) -> float:
        """Waits until no function has written a log line for `idle_seconds` and `busy_check()`
        (e.g. open merge jobs in Firestore) is false. Returns the seconds waited; raises TimeoutError."""
        start = last_change = time.monotonic()
        sizes = self.log_sizes()
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            current = self.log_sizes()
            if current != sizes:
                sizes, last_change = current, now
            for running in self.functions.values():
                if running.process.poll() is not None:
                    raise RuntimeError(f"function {running.spec.name} exited; see {running.log_path}")
            if on_tick:
                on_tick()
            if now - last_change >= idle_seconds and not (busy_check and busy_check()):
                return now - start
            if now - start > timeout:
                raise TimeoutError(f"pipeline still busy after {timeout:.0f} s")

    # --- internals -----------------------------------------------------------------------------
    def _start_function(self, spec: FunctionSpec) -> RunningFunction:
        port = _free_port()
        log_path = self.log_dir / f"{spec.name}.log"
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": str(REPO),
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
        log_file = open(log_path, "ab")
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log_file.close()
        return RunningFunction(spec, port, process, log_path)

    def _create_topics_and_push_subscriptions(self) -> None:
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        project = self.settings.project_id
        with subscriber:
            for spec in FUNCTIONS:
                if spec.trigger_topic_field is None:
                    continue
                topic = getattr(self.settings, spec.trigger_topic_field)
                for name in (topic, dead_letter_topic(topic)):
                    try:
                        publisher.create_topic(name=publisher.topic_path(project, name))
                    except gexc.AlreadyExists:
                        pass
                subscription = subscriber.subscription_path(project, f"{spec.name}-push")
                request = {
                    "name": subscription,
                    "topic": publisher.topic_path(project, topic),
                    "push_config": {"push_endpoint": f"{self.functions[spec.name].url}/projects/{project}/topics/{topic}"},
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
                    subscriber.create_subscription(request=request)
                except gexc.AlreadyExists:
                    subscriber.delete_subscription(subscription=subscription)
                    subscriber.create_subscription(request=request)
                # A pull subscription on each dead-letter topic keeps what failed for inspection.
                dl_sub = subscriber.subscription_path(project, f"{dead_letter_topic(topic)}-hold")
                try:
                    subscriber.create_subscription(
                        name=dl_sub, topic=publisher.topic_path(project, dead_letter_topic(topic)))
                except gexc.AlreadyExists:
                    pass

    def _register_fhir_subscription(self) -> None:
        """A rest-hook Subscription on every Patient write, carrying the full resource, with the relay's token."""
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "Patient deduplication: relay Patient changes to Pub/Sub",
            "criteria": "Patient?",
            "channel": {
                "type": "rest-hook",
                "endpoint": self.relay_url,
                "payload": "application/fhir+json",
                "header": [f"Authorization: Bearer {self.settings.relay_token.get_secret_value()}"],
            },
        }
        response = httpx.post(f"{self.settings.fhir_base_url}/Subscription", json=subscription, timeout=30,
                              headers={"Content-Type": "application/fhir+json"})
        response.raise_for_status()

    def dead_letter_counts(self) -> dict[str, int]:
        """How many messages each dead-letter topic holds (pulled and left unacknowledged)."""
        subscriber = pubsub_v1.SubscriberClient()
        counts: dict[str, int] = {}
        with subscriber:
            for spec in FUNCTIONS:
                if spec.trigger_topic_field is None:
                    continue
                topic = getattr(self.settings, spec.trigger_topic_field)
                sub = subscriber.subscription_path(self.settings.project_id, f"{dead_letter_topic(topic)}-hold")
                response = subscriber.pull(subscription=sub, max_messages=1000, timeout=5,
                                           return_immediately=True)
                counts[topic] = len(response.received_messages)
                if response.received_messages:
                    subscriber.modify_ack_deadline(
                        subscription=sub, ack_ids=[m.ack_id for m in response.received_messages],
                        ack_deadline_seconds=0)
        return counts


def _wait_until_listening(running: RunningFunction, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.spec.name} failed to start; see {running.log_path}:\n"
                               + running.log_path.read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", running.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{running.spec.name} did not listen on port {running.port} within {timeout:.0f} s")
