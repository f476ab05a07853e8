"""Publishing messages to Pub/Sub topics (the emulator locally, Pub/Sub in Google Cloud)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from google.cloud import pubsub_v1

from shared.config import Settings, get_settings
from shared.messages import Message
from shared.ports.messaging import MessagePublisher


@lru_cache(maxsize=1)
def _publisher_client() -> pubsub_v1.PublisherClient:
    return pubsub_v1.PublisherClient()


class Publisher(MessagePublisher):
    """Publishes a typed message (``send``) or raw bytes (``publish_bytes``: the relay); attributes are
    strings. Waits for the server's ack so a caller
    that returns normally knows the message is stored (and raises otherwise, so Pub/Sub redelivers
    the event that caused it)."""

    def __init__(self, settings: Settings | None = None, client: pubsub_v1.PublisherClient | None = None):
        self._settings = settings or get_settings()
        self._client = client or _publisher_client()

    def topic_path(self, topic: str) -> str:
        return self._client.topic_path(self._settings.project_id, topic)

    def send(self, message: Message, timeout: float = 30.0) -> str:
        return self.publish_bytes(getattr(self._settings, message.topic_setting), message.to_json(), timeout=timeout)

    def publish_bytes(self, topic: str, data: bytes, timeout: float = 30.0, **attributes: str) -> str:
        future = self._client.publish(self.topic_path(topic), data, **attributes)
        return future.result(timeout=timeout)

    def send_all(self, messages: Sequence[Message], timeout: float = 60.0) -> list[str]:
        # Every publish is in flight before the first wait: the client batches them into few requests.
        futures = [self._client.publish(self.topic_path(getattr(self._settings, m.topic_setting)), m.to_json())
                   for m in messages]
        return [future.result(timeout=timeout) for future in futures]
