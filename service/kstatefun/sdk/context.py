"""``Context``: what a function sees of the world during one invocation.

Same attribute and method names as StateFun's ``statefun.Context``. The runtime builds one per
invocation and, after the function returns, takes ``outgoing`` and ``egress`` together with the
storage mutations as the invocation's effects.
"""

from __future__ import annotations

from datetime import timedelta

from kstatefun.model import Address
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.sdk.storage import Storage

_DELAYED = "delayed messages arrive with the delayed-messages issue (#4)"


class Context:
    """The invocation context: ``address``, ``caller`` (None for ingress), ``storage``."""

    __slots__ = ("address", "caller", "storage", "outgoing", "egress")

    def __init__(self, address: Address, caller: Address | None, storage: Storage) -> None:
        self.address = address
        self.caller = caller
        self.storage = storage
        self.outgoing: list[Message] = []
        self.egress: list[EgressMessage] = []

    def send(self, message: Message) -> None:
        """Send ``message`` (built with ``message_builder``) to another function."""
        if not isinstance(message, Message):
            raise TypeError(
                f"send() takes a Message built with message_builder(...), "
                f"got {type(message).__name__}"
            )
        self.outgoing.append(message)

    def send_after(
        self, duration: timedelta, message: Message, cancellation_token: str = ""
    ) -> None:
        """Send ``message`` after ``duration``; a non-empty token allows cancelling it."""
        if not isinstance(duration, timedelta):
            raise TypeError(f"send_after() takes a timedelta, got {type(duration).__name__}")
        if not isinstance(message, Message):
            raise TypeError(
                f"send_after() takes a Message built with message_builder(...), "
                f"got {type(message).__name__}"
            )
        if not isinstance(cancellation_token, str):
            raise TypeError(
                f"cancellation_token must be a str, got {type(cancellation_token).__name__}"
            )
        raise NotImplementedError(f"send_after is not supported yet: {_DELAYED}")

    def cancel_delayed_message(self, cancellation_token: str) -> None:
        """Cancel the delayed message sent with ``cancellation_token`` (best effort)."""
        if not isinstance(cancellation_token, str):
            raise TypeError(
                f"cancellation_token must be a str, got {type(cancellation_token).__name__}"
            )
        raise NotImplementedError(f"cancel_delayed_message is not supported yet: {_DELAYED}")

    def send_egress(self, message: EgressMessage) -> None:
        """Send ``message`` (built with ``kafka_egress_message`` or ``egress_message_builder``)."""
        if not isinstance(message, EgressMessage):
            raise TypeError(
                "send_egress() takes an EgressMessage built with kafka_egress_message(...) "
                f"or egress_message_builder(...), got {type(message).__name__}"
            )
        self.egress.append(message)

    def __repr__(self) -> str:
        return f"Context(address={self.address}, caller={self.caller})"
