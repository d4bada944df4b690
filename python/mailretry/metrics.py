"""Prometheus metrics for an engine and its driver (``pip install 'mailretry[metrics]'``).

::

    metrics = Metrics(engine)
    driver = Driver(engine, sender, messages, observer=metrics)
    metrics.serve(9464, addr="127.0.0.1")       # GET /metrics

Engine state is read when Prometheus scrapes (``engine.stats()`` and
``engine.destination(...)`` for each destination seen), so the figures are the
engine's own; what only the driver sees (reply classes, attempt latency) is
counted as attempts finish. Names follow the Prometheus conventions: a
``mailretry_`` prefix, base units (seconds), ``_total`` for counters.

========================================== ======= =============================================
name                                       type    meaning
========================================== ======= =============================================
mailretry_messages                         gauge   messages by ``state``: pending, scheduled,
                                                   ready, leased
mailretry_messages_submitted_total         counter accepted by the engine
mailretry_messages_delivered_total         counter final: delivered
mailretry_messages_bounced_total           counter final: bounced (permanent failure)
mailretry_messages_expired_total           counter final: expired (lifetime over)
mailretry_attempts_total                   counter attempts leased out
mailretry_lease_expirations_total          counter leases that timed out unreported
mailretry_destinations                     gauge   destinations by ``state``: known, suspended,
                                                   held (structural failure)
mailretry_destination_concurrency_limit    gauge   current connection limit, per destination
mailretry_destination_rate_limit_per_second gauge  current rate limit (0: none)
mailretry_destination_in_flight            gauge   attempts running
mailretry_destination_suspended            gauge   1 while suspended
mailretry_destination_held                 gauge   1 while held as structurally failing
mailretry_destination_suspensions_total    counter suspensions so far
mailretry_replies_total                    counter finished attempts per destination, reply
                                                   ``class`` (2xx, 4xx, 5xx, transport) and
                                                   ``category``
mailretry_attempt_duration_seconds         hist.   real time per attempt, by reply ``class``
mailretry_events_total                     counter engine events by ``kind``
========================================== ======= =============================================

Per-destination series exist for at most ``max_destinations`` (source,
destination) pairs, the first ones seen, to bound the number of series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from mailretry._core import Decision, Lease, Reply

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "mailretry.metrics needs prometheus-client: pip install 'mailretry[metrics]'"
    ) from _err

__all__ = ["LATENCY_BUCKETS", "Metrics", "reply_class"]

#: Attempt latency buckets in seconds: a local sink answers in milliseconds, a
#: tarpitting server in tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _EngineView(Protocol):
    def stats(self) -> dict[str, int]: ...
    def destination(self, name: str, source: str | None = None) -> dict[str, Any]: ...


def reply_class(outcome: str | Reply) -> str:
    """``"2xx"``, ``"4xx"``, ``"5xx"`` for a reply text, ``"transport"`` for a
    :func:`mailretry.transport_reply`, ``"other"`` for anything else."""
    if isinstance(outcome, Reply):
        return "transport" if outcome.transport else f"{str(outcome.code)[:1]}xx"
    text = outcome.lstrip()
    if text[:1] in ("2", "4", "5") and text[1:3].isdigit():
        return f"{text[0]}xx"
    return "other"


class Metrics:
    """Prometheus metrics for ``engine``; a :class:`mailretry.aio.DriverObserver`.

    ``registry`` defaults to a new :class:`prometheus_client.CollectorRegistry`
    (not the process-wide one), so several engines can be exported side by side.
    """

    def __init__(
        self,
        engine: _EngineView,
        *,
        registry: CollectorRegistry | None = None,
        max_destinations: int = 1000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._engine = engine
        self._max_destinations = max_destinations
        self._lock = threading.Lock()
        self._destinations: dict[tuple[str, str], None] = {}  # insertion-ordered set
        self._replies = Counter(
            "mailretry_replies",
            "Finished attempts by destination, reply class and category.",
            ["destination", "source", "class", "category"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mailretry_attempt_duration_seconds",
            "Real time of one delivery attempt, by reply class.",
            ["class"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "mailretry_events",
            "Engine events by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(self))

    # -- DriverObserver --------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        self._events.labels(kind=str(event.get("kind", "unknown"))).inc()
        destination = event.get("destination")
        if destination:
            self._track(str(destination), str(event.get("source") or ""))

    def on_attempt(
        self, lease: Lease, outcome: str | Reply, decision: Decision | None, seconds: float
    ) -> None:
        cls = reply_class(outcome)
        self._latency.labels(**{"class": cls}).observe(max(0.0, seconds))
        if not self._track(lease.destination, lease.source):
            return
        category = (decision.category if decision is not None else None) or (
            "delivered" if cls == "2xx" else "none"
        )
        self._replies.labels(
            destination=lease.destination, source=lease.source, category=category, **{"class": cls}
        ).inc()

    # -- serving -----------------------------------------------------------------
    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` over HTTP on ``addr:port`` from a daemon thread
        (``port=0``: any free port; the server's ``server_port`` says which).
        Returns the server: ``shutdown()`` then ``server_close()`` stops it."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    # -- internals -----------------------------------------------------------------
    def _track(self, destination: str, source: str) -> bool:
        key = (destination, source)
        with self._lock:
            if key in self._destinations:
                return True
            if len(self._destinations) >= self._max_destinations:
                return False
            self._destinations[key] = None
            return True

    def _tracked(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._destinations)

    def _collect_engine(self) -> Iterator[Metric]:
        s = self._engine.stats()
        messages = GaugeMetricFamily(
            "mailretry_messages", "Messages in the engine by state.", labels=["state"]
        )
        for state in ("pending", "scheduled", "ready", "leased"):
            messages.add_metric([state], s.get(state, 0))
        yield messages
        for name, key, help_text in (
            ("mailretry_messages_submitted", "submitted", "Messages accepted by the engine."),
            ("mailretry_messages_delivered", "delivered", "Messages delivered."),
            ("mailretry_messages_bounced", "bounced", "Messages bounced (permanent failure)."),
            ("mailretry_messages_expired", "expired", "Messages expired at their lifetime."),
            ("mailretry_attempts", "attempts", "Attempts leased out."),
            ("mailretry_lease_expirations", "lease_expirations", "Leases that timed out."),
        ):
            yield CounterMetricFamily(name, help_text, value=s.get(key, 0))
        destinations = GaugeMetricFamily(
            "mailretry_destinations", "Destinations by state.", labels=["state"]
        )
        destinations.add_metric(["known"], s.get("destinations", 0))
        destinations.add_metric(["suspended"], s.get("suspended_destinations", 0))
        destinations.add_metric(["held"], s.get("held_destinations", 0))
        yield destinations
        yield from self._collect_destinations()

    def _collect_destinations(self) -> Iterable[Metric]:
        labels = ["destination", "source"]
        limit = GaugeMetricFamily(
            "mailretry_destination_concurrency_limit",
            "Current connection limit of a destination.",
            labels=labels,
        )
        rate = GaugeMetricFamily(
            "mailretry_destination_rate_limit_per_second",
            "Current rate limit of a destination (0: none).",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "mailretry_destination_in_flight", "Attempts running.", labels=labels
        )
        suspended = GaugeMetricFamily(
            "mailretry_destination_suspended",
            "1 while the destination is suspended.",
            labels=labels,
        )
        held = GaugeMetricFamily(
            "mailretry_destination_held",
            "1 while the destination is held as structurally failing.",
            labels=labels,
        )
        suspensions = CounterMetricFamily(
            "mailretry_destination_suspensions", "Suspensions so far.", labels=labels
        )
        for destination, source in self._tracked():
            try:
                d = self._engine.destination(destination, source or None)
            except KeyError:
                continue
            key = [destination, source]
            limit.add_metric(key, d.get("concurrency_limit", 0))
            rate.add_metric(key, d.get("rate_per_second") or 0.0)
            in_flight.add_metric(key, d.get("in_flight", 0))
            suspended.add_metric(key, 1 if d.get("suspended_until") is not None else 0)
            held.add_metric(key, 1 if d.get("held") else 0)
            suspensions.add_metric(key, d.get("suspensions", 0))
        return (limit, rate, in_flight, suspended, held, suspensions)


class _EngineCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics._collect_engine())

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time; nothing to check at registration
