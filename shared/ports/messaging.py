"""Port: sending the pipeline's typed messages (``shared.messages``). The adapter is
``shared.adapters.pubsub.Publisher``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.messages import Message


class MessagePublisher(ABC):
    @abstractmethod
    def send(self, message: Message) -> str:
        """Publishes ``message`` to its topic and returns the message id once the broker stored it;
        raises otherwise (so the caller's own message is redelivered)."""

    @abstractmethod
    def publish_bytes(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publishes a body as it came (the relay forwards a FHIR server's notification unchanged)."""
