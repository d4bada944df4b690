"""A straightforward pure-Python retry scheduler: the baseline for `benchmarks/run engine`.

What a competent Python developer would write for the same default policy as
``mailretry.Engine`` without the compiled core: a dict of messages, a heapq of
(due, seq, id) for scheduled retries, per-destination ready queues and
in-flight counters with a fixed concurrency cap, and the default schedule
(15 min doubling, capped at 4 h, 5-day lifetime counted from submission, one
last attempt at the end of the lifetime). Replies are classified by their
code class only: 2xx delivered, 4xx retry, 5xx bounce.

Deliberately NOT done (so that it is cheaper per operation than the engine and
the speed ratio against it is conservative): no reply classifier (categories,
enhanced codes, texts, rules), no greylisting or connection-failure schedule
overrides, no adaptive concurrency (cuts on ``421 too many connections``,
raises after successes), no rate limits, no destination suspension, health or
structural-failure detection, no lease timeouts, no events, no snapshots.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DELIVERED = "delivered"
RETRY = "retry"
BOUNCED = "bounced"
EXPIRED = "expired"


@dataclass(slots=True)
class _Message:
    destination: str
    submitted: float
    attempts: int = 0
    leased: bool = False
    final: bool = False  # the pending retry is the last one, at the end of the lifetime


class PurePythonEngine:
    """Retry scheduling in plain Python (dict + heapq), default policy only."""

    def __init__(
        self,
        *,
        concurrency: int = 20,
        initial_delay: float = 15 * 60.0,
        multiplier: float = 2.0,
        max_delay: float = 4 * 3600.0,
        lifetime: float = 5 * 86400.0,
    ) -> None:
        self.concurrency = concurrency
        self.initial_delay = initial_delay
        self.multiplier = multiplier
        self.max_delay = max_delay
        self.lifetime = lifetime
        self._messages: dict[int, _Message] = {}
        self._heap: list[tuple[float, int, int]] = []  # (due, seq, msg_id)
        self._seq = 0
        self._ready: dict[str, deque[int]] = {}  # destination -> due message ids, FIFO
        self._in_flight: dict[str, int] = {}
        self._last_now = 0.0
        self.delivered = 0
        self.bounced = 0
        self.expired = 0
        self.attempts = 0

    # -- messages -------------------------------------------------------------
    def submit(self, msg_id: int, destination: str, now: float) -> None:
        if msg_id in self._messages:
            raise KeyError(f"duplicate message id {msg_id}")
        self._messages[msg_id] = _Message(destination, now)
        self._ready.setdefault(destination, deque()).append(msg_id)
        self._last_now = now

    def submit_many(self, msg_ids: Iterable[int], destinations: Iterable[str], now: float) -> None:
        for msg_id, destination in zip(msg_ids, destinations, strict=True):
            self.submit(msg_id, destination, now)

    def take_ready(self, now: float, limit: int) -> list[tuple[int, str, int]]:
        """Up to ``limit`` (msg_id, destination, attempt) for due messages whose
        destination has a free concurrency slot."""
        self._last_now = now
        heap = self._heap
        messages = self._messages
        ready = self._ready
        while heap and heap[0][0] <= now:
            msg_id = heapq.heappop(heap)[2]
            destination = messages[msg_id].destination
            queue = ready.get(destination)
            if queue is None:
                queue = ready[destination] = deque()
            queue.append(msg_id)
        out: list[tuple[int, str, int]] = []
        in_flight = self._in_flight
        emptied: list[str] = []
        for destination, queue in ready.items():
            if len(out) >= limit:
                break
            busy = in_flight.get(destination, 0)
            free = min(self.concurrency - busy, limit - len(out))
            if free <= 0:
                continue
            taken = 0
            while taken < free and queue:
                msg_id = queue.popleft()
                m = messages[msg_id]
                m.leased = True
                m.attempts += 1
                out.append((msg_id, destination, m.attempts))
                taken += 1
            in_flight[destination] = busy + taken
            if not queue:
                emptied.append(destination)
        for destination in emptied:
            del ready[destination]
        self.attempts += len(out)
        return out

    def report(self, msg_id: int, reply: str, now: float) -> str:
        """Outcome of a leased attempt; returns the action taken."""
        m = self._messages[msg_id]
        if not m.leased:
            raise ValueError(f"message {msg_id} is not leased")
        m.leased = False
        self._in_flight[m.destination] -= 1
        code_class = int(reply[:3]) // 100
        if code_class == 2:
            del self._messages[msg_id]
            self.delivered += 1
            return DELIVERED
        if code_class == 5:
            del self._messages[msg_id]
            self.bounced += 1
            return BOUNCED
        if code_class != 4:
            raise ValueError(f"not an SMTP reply: {reply!r}")
        end = m.submitted + self.lifetime
        if m.final:
            del self._messages[msg_id]
            self.expired += 1
            return EXPIRED
        delay = min(self.initial_delay * self.multiplier ** (m.attempts - 1), self.max_delay)
        due = now + delay
        if due >= end:
            due = end
            m.final = True
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, msg_id))
        return RETRY

    def report_many(self, msg_ids: Sequence[int], replies: Sequence[str], now: float) -> list[str]:
        report = self.report
        return [report(i, r, now) for i, r in zip(msg_ids, replies, strict=True)]

    # -- observation ----------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """The last ``now`` seen while messages wait for a slot, else the next due time."""
        if self._ready:
            return self._last_now
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        return len(self._messages)
