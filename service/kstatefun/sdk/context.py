"""``Context``: what a function sees of the world during one invocation.

Same attribute and method names as StateFun's ``statefun.Context``. The runtime builds one per
invocation and, after the function returns, takes ``outgoing``, ``egress`` and ``delayed``
together with the storage mutations as the invocation's ``Effects`` (runtime/effects.py),
which are checked and applied only then: nothing here has any effect before that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kstatefun.model import Address
from kstatefun.sdk.messages import EgressMessage, Message
from kstatefun.sdk.storage import Storage


@dataclass(frozen=True, slots=True)
class DelayedMessage:
    """``send_after``: deliver ``message`` ``delay_ms`` from now; a token allows cancelling."""

    delay_ms: int
    message: Message
    cancellation_token: str


@dataclass(frozen=True, slots=True)
class CancelDelayed:
    """``cancel_delayed_message``: cancel the pending message sent with this token, if any."""

    cancellation_token: str


class Context:
    """The invocation context: ``address``, ``caller`` (None for ingress), ``storage``."""

    __slots__ = ("address", "caller", "storage", "outgoing", "egress", "delayed")

    def __init__(self, address: Address, caller: Address | None, storage: Storage) -> None:
        self.address = address
        self.caller = caller
        self.storage = storage
        self.outgoing: list[Message] = []
        self.egress: list[EgressMessage] = []
        self.delayed: list[DelayedMessage | CancelDelayed] = []  # in call order

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
        delay_ms = duration // timedelta(milliseconds=1)
        if delay_ms < 0:
            raise ValueError(f"send_after() takes a delay of zero or more, got {duration}")
        self.delayed.append(DelayedMessage(delay_ms, message, cancellation_token))

    def cancel_delayed_message(self, cancellation_token: str) -> None:
        """Cancel the pending delayed message sent with ``cancellation_token``; cancelling an
        unknown or already delivered token does nothing."""
        if not isinstance(cancellation_token, str):
            raise TypeError(
                f"cancellation_token must be a str, got {type(cancellation_token).__name__}"
            )
        if not cancellation_token:
            raise ValueError("cancel_delayed_message() needs the non-empty token used to send")
        self.delayed.append(CancelDelayed(cancellation_token))

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
