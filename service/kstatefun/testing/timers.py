"""Delayed messages on the harness's virtual clock (issue 4's semantics).

- A message sent with ``send_after(delay, ...)`` at virtual time ``t`` is due at ``t + delay``
  (whole milliseconds). Due timers fire in due order; timers due at the same millisecond fire
  in the order they were scheduled.
- A cancellation token is scoped to the sender's address: two addresses may use the same
  token. Cancelling an unknown, already fired or already cancelled token does nothing.
- Scheduling a token that is still pending (scheduled, not fired, not cancelled) is refused;
  the harness makes that invocation a dead letter (the check is runtime/effects.py's, which
  asks ``TimerQueue.has_token``). Cancelling and then re-scheduling a token
  within one invocation is allowed: the operations are checked in call order.
- A timer without a token (``""``) can only fire.
"""

from __future__ import annotations

import heapq

from kstatefun.model import Address
from kstatefun.sdk.messages import Message


class VirtualClock:
    """The harness's time in milliseconds. Only the harness moves it (``Harness.advance``)."""

    __slots__ = ("_now_ms",)

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms

    @property
    def now_ms(self) -> int:
        """Virtual milliseconds (since the epoch, if the harness was started at a real time)."""
        return self._now_ms

    def _set(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def __repr__(self) -> str:
        return f"VirtualClock(now_ms={self._now_ms})"


class Timer:
    """One scheduled delayed message."""

    __slots__ = ("due_ms", "seq", "sender", "token", "message", "cancelled")

    def __init__(
        self, due_ms: int, seq: int, sender: Address, token: str, message: Message
    ) -> None:
        self.due_ms = due_ms
        self.seq = seq
        self.sender = sender
        self.token = token
        self.message = message
        self.cancelled = False


class TimerQueue:
    """Pending timers: a heap by (due, scheduling order), and the pending ones by token."""

    __slots__ = ("_heap", "_by_token", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Timer]] = []
        self._by_token: dict[tuple[Address, str], Timer] = {}
        self._seq = 0

    # --- the timer target of runtime/effects.py (the partition is ignored) ------------------

    def has_token(self, partition: int, sender: Address, token: str) -> bool:
        return (sender, token) in self._by_token

    def schedule_message(
        self,
        partition: int,
        sender: Address,
        token: str,
        anonymous: bool,
        due_ms: int,
        message: Message,
    ) -> None:
        """Schedule ``message``; an ``anonymous`` token (the runtime's id for a message sent
        without one) is not kept: such a timer can only fire."""
        self._seq += 1
        timer = Timer(due_ms, self._seq, sender, "" if anonymous else token, message)
        heapq.heappush(self._heap, (timer.due_ms, timer.seq, timer))
        if timer.token:
            self._by_token[(sender, timer.token)] = timer

    def cancel_token(self, partition: int, sender: Address, token: str) -> None:
        timer = self._by_token.pop((sender, token), None)
        if timer is not None:
            timer.cancelled = True

    def next_due(self) -> int | None:
        """When the next pending timer is due, or None when none is pending."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def is_due(self, now_ms: int) -> bool:
        heap = self._heap
        return bool(heap) and heap[0][0] <= now_ms

    def pop_due(self, now_ms: int) -> list[Timer]:
        """Remove and return the timers due at ``now_ms``, in firing order."""
        fired = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                continue
            if timer.token:
                del self._by_token[(timer.sender, timer.token)]
            fired.append(timer)
        return fired

    def pending(self) -> list[Timer]:
        """Every pending timer, in firing order."""
        return [t for _, _, t in sorted(self._heap) if not t.cancelled]

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)
