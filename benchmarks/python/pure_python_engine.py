"""A straightforward pure-Python retry scheduler: the baseline for `benchmarks/run engine`.

What a competent Python developer would write for the same default policy as
``mailretry.Engine`` without the compiled core: a dict of messages, a heapq of
(due, seq, id) for scheduled retries, per-destination ready queues and
in-flight counters with a fixed concurrency cap, and the default schedule
(15 min doubling, capped at 4 h, 5-day lifetime counted from submission, one
last attempt at the end of the lifetime). Replies are classified by their
code class only (2xx delivered, 4xx retry, 5xx bounce), or, with
``classify=classify_reply``, by an ordered list of regexes per cause as a
Python developer would write (transient/permanent from the cause, e.g. QQ's
``550 ... frequency limited`` retried).

Deliberately NOT done (so that it is cheaper per operation than the engine and
the speed ratio against it is conservative): no enhanced-code or provider
rules, no user rules, no greylisting or connection-failure schedule
overrides, no adaptive concurrency (cuts on ``421 too many connections``,
raises after successes), no rate limits, no destination suspension, health or
structural-failure detection, no lease timeouts, no events, no snapshots.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

DELIVERED = "delivered"
RETRY = "retry"
BOUNCED = "bounced"
EXPIRED = "expired"


# What a Python developer classifying replies would write: one precompiled,
# case-insensitive regex per cause, tried in order, the code class as fallback.
# (The compiled core matches ~80 rules in one pass; this is far simpler.)
_CAUSES: list[tuple[re.Pattern[str], str, bool | None]] = [
    (re.compile(p, re.IGNORECASE), category, transient)
    for p, category, transient in [
        (
            r"too many (concurrent )?(connections|sessions)|connection (frequency|limit)",
            "too_many_connections",
            True,
        ),
        (
            r"rate.?limit|too many (messages|emails)|\b4\.7\.28\b|frequency limited|throttl",
            "rate_limit",
            True,
        ),
        (r"greylist|graylist|try again in \d+ (min|sec)", "greylisting", True),
        (r"\bspf\b|\bdkim\b|\bdmarc\b|authenticat", "auth_spf_dkim_dmarc", None),
        (r"reverse dns|\bptr\b|rdns|hostname .*resolve", "ptr_rdns", None),
        (r"spamhaus|blacklist|blocklist|dnsbl|\brbl\b|listed", "dnsbl_listed", None),
        (
            r"reputation|unusual (rate|amount)|temporarily deferred|\[ts\d+\]",
            "reputation_throttle",
            True,
        ),
        (
            r"(mailbox|quota|storage).{0,20}(full|exceeded)|over ?quota|insufficient storage",
            "mailbox_full",
            None,
        ),
        (
            r"user unknown|unknown user|no such (user|mailbox)|does not exist|invalid recipient"
            r"|recipient not found|\b5\.1\.1\b",
            "mailbox_unknown",
            False,
        ),
        (r"disabled|inactive|suspended|deactivated", "mailbox_disabled", False),
        (r"domain (not found|does not exist)|host not found|\b5\.1\.2\b", "domain_unknown", False),
        (r"too (large|big)|size limit|message size|\b5\.3\.4\b", "message_too_large", False),
        (r"relay(ing)? (access )?(denied|not permitted)", "relay_denied", None),
        (r"starttls|\btls\b.*required|must issue a starttls", "tls_required", None),
        (r"spam|content|policy|blocked", "policy_content_spam", None),
        (r"shutting down|maintenance", "maintenance_shutdown", True),
        (
            r"busy|overload|resources|try again later|service (not )?available",
            "server_busy_capacity",
            True,
        ),
    ]
]


def classify_reply(reply: str) -> tuple[str, bool]:
    """(category, transient) for a reply text, the straightforward way."""
    code_class = int(reply[:3]) // 100
    for pattern, category, transient in _CAUSES:
        if pattern.search(reply):
            return category, code_class == 4 if transient is None else transient
    return ("unknown_transient", True) if code_class == 4 else ("unknown_permanent", False)


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
        classify: Callable[[str], tuple[str, bool]] | None = None,
    ) -> None:
        """``classify``: e.g. :func:`classify_reply`; None = the code class alone."""
        self._classify = classify
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
        if code_class not in (4, 5):
            raise ValueError(f"not an SMTP reply: {reply!r}")
        transient = code_class == 4
        if self._classify is not None:
            _category, transient = self._classify(reply)
        if not transient:
            del self._messages[msg_id]
            self.bounced += 1
            return BOUNCED
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
