"""Port: sending the pipeline's typed messages (``shared.messages``). The adapter is
``shared.adapters.pubsub.Publisher``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from shared.messages import Message


class MessagePublisher(ABC):
    @abstractmethod
    def send(self, message: Message) -> str:
        """Publishes ``message`` to its topic and returns the message id once the broker stored it;
        raises otherwise (so the caller's own message is redelivered)."""

    @abstractmethod
    def publish_bytes(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publishes a body as it came (the relay forwards a FHIR server's notification unchanged)."""

    def send_all(self, messages: Sequence[Message]) -> list[str]:
        """Publishes every message (all in flight at once where the adapter can) and returns their ids
        once the broker stored them all; raises if one failed (the others may be stored: a caller that
        sends them again must tolerate copies)."""
        return [self.send(message) for message in messages]
