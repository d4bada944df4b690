"""Several sending nodes, one view of each destination: shared limits through Redis.

``pip install 'mailretry[cluster]'`` (the ``redis`` client with ``hiredis``).

A receiving server counts connections and messages per client address, not per
process: two MTA hosts that send from the same source IPs must share their
limits. :class:`RedisShared` is the layer that makes a
:class:`~mailretry.aio.Driver` (``Driver(..., shared=RedisShared(...))``) ask
Redis before each attempt. Messages stay owned by one node (the platform
shards them); only the state of each (source, destination) is shared:

* **Connection slots.** Before an attempt, the driver takes one of the
  destination's cluster-wide slots (``max_connections`` per source x
  destination). A slot is a member of a sorted set scored by its expiry
  (``connection_ttl``), renewed while the attempt runs, removed when it ends: a
  crashed node's slots time out by themselves.
* **Rates.** A cluster-wide ceiling (``rate``) is kept as GCRA (a theoretical
  arrival time per key) in the same atomic Lua script as the slot, so one
  round trip decides both, on Redis's clock.
* **What one node learns, all apply.** The engine's ``destination_throttled``,
  ``destination_suspended``, ``structural_failure`` and ``structural_cleared``
  events are published to the destination's state hash, with a TTL
  (``cut_ttl``, or the end of the suspension). The admission script reads it,
  so every node's next attempt obeys it at once; nodes also poll a change index
  every ``poll_interval`` (well under 1 s) for their local view. A concurrency
  cut lowers the cluster-wide slot count, a rate cut the GCRA interval; a
  structural flag leaves one slot. A suspension makes a lease wait at the gate
  if it ends within ``max_wait``; otherwise the driver reports the reply that
  caused it (the node's engine then suspends the destination itself, with its
  own schedule; the message is deferred as if it had got that reply, without a
  connection, and is not lost).
* **When Redis is unreachable** (connection refused, timeouts after
  ``timeout`` seconds), the node falls back to local limits: the last known
  cluster-wide values scaled to its ``share`` (``max(1, floor(slots x
  share))`` connections, ``rate x share``), emits a ``cluster_fallback`` event,
  pings Redis every ``retry_interval`` and emits ``cluster_resumed`` when it
  is back. Nothing waits on Redis: leases are admitted or wait as before, and
  messages never leave the engine.

Configuration: a ``[cluster]`` table in the engine's TOML file (the engine lets
it through; :meth:`ClusterConfig.from_toml` reads it)::

    [cluster]
    url = "redis://10.0.0.5:6379/0"
    namespace = "mta"            # key prefix; one per platform
    node_id = "mta1"             # default: host name and process id
    share = 0.34                 # this node's part of the limits when Redis is down
    max_connections = 2          # per source x destination, cluster-wide (0: no cap)
    rate = "20/1s"               # cluster-wide ceiling ("unlimited": none)
    connection_ttl = "30s"

    [cluster.destinations."gmail-smtp-in.l.google.com"]
    max_connections = 10
    rate = "600/1m"

Keys (``docs/scaling.md`` has the costs): ``NS:{SOURCE|DEST}:conn`` (slots),
``:gcra`` (rate), ``:state`` (published cuts), all three in one hash tag so a
Redis Cluster keeps them in one slot; ``{NS}:seq`` and ``{NS}:changes`` (the
change index, one slot of its own).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from mailretry._cluster_config import ClusterConfig, DestinationLimits
from mailretry._cluster_scripts import _ACQUIRE, _INDEX, _PUBLISH, _RENEW
from mailretry._core import Lease

if TYPE_CHECKING:  # the single-node path never imports redis
    import redis.asyncio

__all__ = [
    "Admission",
    "ClusterConfig",
    "ClusterStats",
    "DestinationLimits",
    "RedisShared",
]

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


# -- the layer ---------------------------------------------------------------------
@dataclass
class Admission:
    """The gate's answer for one lease (see :meth:`RedisShared.admit`)."""

    admitted: bool  #: the attempt may go ahead (release it with :meth:`RedisShared.release`)
    reply: str | None = None  #: not admitted: report this cluster evidence instead
    local: bool = False  #: admitted by the local fallback (Redis unreachable)
    key: str = ""
    member: str = ""


@dataclass
class ClusterStats:
    """Counters kept by a :class:`RedisShared`."""

    admitted: int = 0  #: attempts admitted through Redis
    admitted_locally: int = 0  #: attempts admitted by the fallback while Redis was down
    waits: int = 0  #: times an attempt waited at the gate (slots, rate, short suspension)
    replayed: int = 0  #: leases answered with a suspension learned from another node
    gave_up: int = 0  #: leases not admitted before their deadline (left to time out)
    published: int = 0  #: cuts, suspensions and flags published
    fallbacks: int = 0  #: times Redis became unreachable
    recoveries: int = 0  #: times it came back
    round_trips: int = 0  #: Redis commands and scripts sent (pipelines count once)


@dataclass
class _View:
    """What this node knows of one key's published state."""

    concurrency: int | None = None
    interval_ms: float | None = None
    suspended_until: float | None = None  # epoch seconds
    structural: bool = False
    reply: str = ""
    origin: str = ""


@dataclass
class _Local:
    in_flight: int = 0
    tat: float = 0.0  # monotonic seconds


_REDIS_DOWN: tuple[type[BaseException], ...] = (OSError,)  # completed in RedisShared.__init__


class RedisShared:
    """Destination state shared by the nodes of a cluster through Redis.

    ``RedisShared(config)`` or ``RedisShared("redis://host:6379/0", share=0.5,
    defaults=DestinationLimits(max_connections=2))``: keyword arguments are
    :class:`ClusterConfig` fields. Give it to a :class:`~mailretry.aio.Driver`
    (``shared=``), which starts it, asks :meth:`admit` before each attempt,
    :meth:`release` after it, passes every engine event to :meth:`observe` and
    gets ``cluster_fallback``, ``cluster_resumed`` and ``cluster_applied``
    events back. Use it from one event loop; :meth:`aclose` closes the client.
    """

    def __init__(self, config: ClusterConfig | str | None = None, **overrides: Any) -> None:
        try:
            import redis.asyncio as aioredis
            import redis.exceptions
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as err:  # pragma: no cover - depends on the installation
            raise ImportError(
                "mailretry.cluster needs the redis client: pip install 'mailretry[cluster]'"
            ) from err
        global _REDIS_DOWN
        # Any Redis failure (including a script error) falls back to local
        # limits; the poller decides when Redis is usable again.
        _REDIS_DOWN = (redis.exceptions.RedisError, OSError)
        if isinstance(config, str):
            config = ClusterConfig(url=config, **overrides)
        elif config is None:
            config = ClusterConfig(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        self.config = config
        self.node_id = config.node_id or f"{socket.gethostname()}:{os.getpid()}"
        # No retries inside the client: a command that fails makes the node fall
        # back at once, and the poller decides when Redis is back.
        # A bounded pool: a command waits for a free connection rather than fail
        # when many attempts are admitted at once. The wait itself has no limit
        # (a backlog here is not Redis being down); the commands that hold the
        # connections end within ``timeout`` either way.
        pool = aioredis.BlockingConnectionPool.from_url(
            config.url,
            max_connections=config.connections,
            timeout=None,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._pool = pool
        self._redis: redis.asyncio.Redis = aioredis.Redis(
            connection_pool=pool, retry=Retry(NoBackoff(), 0)
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._publish = self._redis.register_script(_PUBLISH)
        self._index = self._redis.register_script(_INDEX)
        self._ns = config.namespace
        # One hash tag for the change index: a Redis Cluster keeps both keys in
        # one slot, so _INDEX stays atomic there.
        self._seq_key = f"{{{self._ns}}}:seq"
        self._changes_key = f"{{{self._ns}}}:changes"
        self._members = itertools.count(1)
        # Slot members name this process's life too: a node restarted under the
        # same node_id must not refresh the slots its crashed predecessor left.
        self._incarnation = f"{self.node_id}:{os.getpid()}:{time.time_ns() // 1_000_000}"
        self._held: dict[str, set[str]] = {}  # conn key -> members held here
        self._views: dict[str, _View] = {}  # key prefix -> published state
        self._locals: dict[str, _Local] = {}
        self._replayed: dict[str, float] = {}  # key -> when evidence was last applied
        self._queue: list[tuple[str, dict[str, Any]]] = []
        self._queued = asyncio.Event()
        self._up = True
        self._seq = 0
        self._emit: Emit | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = ClusterStats()

    # -- life ------------------------------------------------------------------
    @property
    def up(self) -> bool:
        """Sharing through Redis now (False: local fallback)."""
        return self._up

    async def start(self, emit: Emit | None = None) -> None:
        """Start polling, renewing and publishing (idempotent); ``emit`` gets
        the layer's events."""
        if emit is not None:
            self._emit = emit
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="mailretry-cluster-poll"),
            asyncio.create_task(self._renew_loop(), name="mailretry-cluster-renew"),
            asyncio.create_task(self._publish_loop(), name="mailretry-cluster-publish"),
        ]
        await self.refresh()

    async def stop(self) -> None:
        """Stop the background tasks (publishing what is queued first, if Redis answers)."""
        if self._queue and self._up:
            await self._flush()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """:meth:`stop` and close the Redis client."""
        await self.stop()
        await self._redis.aclose()
        await self._pool.disconnect()  # ours: the client does not close a pool it was given

    # -- keys ------------------------------------------------------------------
    def key(self, destination: str, source: str = "") -> str:
        """The key prefix of a source x destination: ``NS:{SOURCE|DEST}``; the
        braces are a Redis Cluster hash tag (one slot for its three keys)."""
        return f"{self._ns}:{{{source}|{destination.lower()}}}"

    # -- the gate ----------------------------------------------------------------
    async def admit(self, lease: Lease, give_up_at: float | None = None) -> Admission:
        """Wait until the lease may be attempted: a cluster-wide slot and rate
        token (or, while Redis is down, local ones scaled to ``share``).
        Returns ``Admission(admitted=False, reply=...)`` when the destination is
        suspended cluster-wide for longer than ``max_wait``: report that reply
        to the engine instead of sending. ``give_up_at`` (``time.monotonic()``)
        bounds the wait: past it, ``Admission(admitted=False)`` without a reply.
        """
        key = self.key(lease.destination, lease.source)
        limits = self.config.limits(lease.destination)
        member = f"{self._incarnation}:{next(self._members)}"
        backoff = 0.002
        waited = False
        while True:
            if self._up:
                try:
                    answer = await self._try_redis(key, member, limits)
                except _REDIS_DOWN as exc:
                    self._went_down(exc)
                    continue
                code, wait_ms = int(answer[0]), float(answer[1])
                if code == 1:
                    self.stats.admitted += 1
                    self._held.setdefault(key, set()).add(member)
                    return Admission(True, key=key, member=member)
                wait = wait_ms / 1000.0
                if code == -1:
                    reply = str(answer[2]) if len(answer) > 2 else ""
                    if wait > self.config.max_wait and reply:
                        return self._apply_evidence(lease, key, reply)
                elif code == 0:  # slots: poll soon (another node may release one)
                    wait = min(wait, backoff)
                    backoff = min(backoff * 2, 0.02)
            else:
                admitted, wait, evidence = self._try_local(key, limits)
                if admitted:
                    self.stats.admitted_locally += 1
                    return Admission(True, local=True, key=key, member=member)
                if evidence is not None:
                    return self._apply_evidence(lease, key, evidence)
            if not waited:
                waited = True
                self.stats.waits += 1
            if give_up_at is not None and time.monotonic() + wait > give_up_at:
                self.stats.gave_up += 1
                return Admission(False, key=key)
            await asyncio.sleep(max(wait, 0.001))

    async def release(self, admission: Admission) -> None:
        """The attempt is over: give its slot back."""
        if not admission.admitted:
            return
        if admission.local:
            local = self._locals.get(admission.key)
            if local is not None and local.in_flight > 0:
                local.in_flight -= 1
            return
        held = self._held.get(admission.key)
        if held is not None:
            held.discard(admission.member)
            if not held:
                del self._held[admission.key]
        if self._up:
            try:
                self.stats.round_trips += 1
                await self._redis.zrem(admission.key + ":conn", admission.member)
            except _REDIS_DOWN as exc:
                self._went_down(exc)  # the slot ends with its TTL

    async def _try_redis(self, key: str, member: str, limits: DestinationLimits) -> list[Any]:
        interval_ms = 0 if limits.rate_per_second is None else 1000.0 / limits.rate_per_second
        self.stats.round_trips += 1
        result = await self._acquire(
            keys=[key + ":conn", key + ":gcra", key + ":state"],
            args=[
                member,
                limits.max_connections,
                int(self.config.connection_ttl * 1000),
                round(interval_ms, 3),
                self.config.burst,
            ],
        )
        return list(result)

    def _try_local(self, key: str, limits: DestinationLimits) -> tuple[bool, float, str | None]:
        """The fallback gate: the last known cluster-wide values scaled to
        ``share``. Returns (admitted, seconds to wait, evidence to apply)."""
        view = self._views.get(key, _View())
        share = self.config.share
        if view.suspended_until is not None:
            left = view.suspended_until - time.time()
            if left > 0:
                if left > self.config.max_wait and view.reply:
                    return False, 0.0, view.reply
                return False, left, None
        cap = limits.max_connections
        if view.concurrency is not None and (cap == 0 or view.concurrency < cap):
            cap = view.concurrency
        if view.structural and (cap == 0 or cap > 1):
            cap = 1
        local = self._locals.setdefault(key, _Local())
        if cap > 0 and local.in_flight >= max(1, math.floor(cap * share)):
            return False, 0.005, None
        interval = 0.0 if limits.rate_per_second is None else 1.0 / limits.rate_per_second
        if view.interval_ms is not None:
            interval = max(interval, view.interval_ms / 1000.0)
        if interval > 0:
            interval /= share
            now = time.monotonic()
            tat = max(local.tat, now)
            tau = interval * (self.config.burst - 1)
            if tat - now > tau:
                return False, tat - tau - now, None
            local.tat = tat + interval
        local.in_flight += 1
        return True, 0.0, None

    def _apply_evidence(self, lease: Lease, key: str, reply: str) -> Admission:
        self.stats.replayed += 1
        # The engine's own destination_suspended event for this report is an
        # echo: not published again (it would extend the suspension forever).
        self._replayed[key] = time.monotonic()
        self._fire(
            {
                "kind": "cluster_applied",
                "time": time.time(),
                "msg_id": lease.msg_id,
                "destination": lease.destination,
                "source": lease.source,
                "reply": reply,
                "detail": "suspended by another node: its reply is reported without a connection",
            }
        )
        return Admission(False, reply=reply, key=key)

    # -- publishing ----------------------------------------------------------------
    def observe(self, event: dict[str, Any]) -> None:
        """An engine event: cuts, suspensions and structural flags are queued
        for publication (sent by a background task)."""
        kind = event.get("kind")
        if kind not in _PUBLISHED:
            return
        key = self.key(str(event.get("destination", "")), str(event.get("source", "")))
        applied = self._replayed.get(key)
        if applied is not None:
            if time.monotonic() - applied < _ECHO_WINDOW:
                return
            del self._replayed[key]
        self._queue.append((key, event))
        self._queued.set()

    async def _flush(self) -> None:
        queue, self._queue = self._queue, []
        try:
            for i, (key, event) in enumerate(queue):
                await self._publish_one(key, event)
                queue[i] = ("", {})
        except _REDIS_DOWN as exc:
            # Kept for when Redis is back: a cut learned during an outage still counts.
            self._queue = [item for item in queue if item[0]] + self._queue
            self._went_down(exc)

    async def _publish_one(self, key: str, event: dict[str, Any]) -> None:
        kind = event["kind"]
        conc, interval, until = 0, 0.0, 0
        if kind == "destination_throttled":
            what = "throttle"
            # The event carries both limits in force; its detail says which one
            # was cut ("concurrency cut to 2", "rate set to ... by rule").
            detail = str(event.get("detail") or "")
            if detail.startswith("concurrency") or (
                not detail and event.get("category") == "too_many_connections"
            ):
                conc = int(event.get("concurrency_limit") or 0)
            elif event.get("rate_per_second"):
                interval = 1000.0 / float(event["rate_per_second"])
        elif kind == "destination_suspended":
            what = "suspend"
            until = int(float(event.get("until") or 0) * 1000)
        elif kind == "structural_failure":
            what = "structural"
        else:
            what = "cleared"
        reply = str(event.get("reply") or "")
        if not reply and event.get("samples"):
            reply = str(event["samples"][0])
        self.stats.round_trips += 2
        await self._publish(
            keys=[key + ":state"],
            args=[
                what,
                conc,
                round(interval, 3),
                until,
                reply,
                self.node_id,
                int(self.config.cut_ttl * 1000),
            ],
        )
        # After the state, so that a node that sees the change reads the new state.
        await self._index(keys=[self._seq_key, self._changes_key], args=[key])
        self.stats.published += 1

    async def _publish_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            if self._up:
                await self._flush()

    # -- the local view --------------------------------------------------------------
    def view(self, destination: str, source: str = "") -> dict[str, Any]:
        """What this node applies to a source x destination: the configured
        limits tightened by what was published (as last polled)."""
        limits = self.config.limits(destination)
        v = self._views.get(self.key(destination, source), _View())
        cap = limits.max_connections
        if v.concurrency is not None and (cap == 0 or v.concurrency < cap):
            cap = v.concurrency
        if v.structural and (cap == 0 or cap > 1):
            cap = 1
        rate = limits.rate_per_second
        if v.interval_ms:
            published = 1000.0 / v.interval_ms
            rate = published if rate is None else min(rate, published)
        suspended = v.suspended_until if (v.suspended_until or 0) > time.time() else None
        return {
            "max_connections": cap,
            "rate_per_second": rate,
            "suspended_until": suspended,
            "structural": v.structural,
            "reply": v.reply,
            "origin": v.origin,
            "sharing": self._up,
        }

    async def refresh(self) -> None:
        """Poll the change index once (the background task does it every
        ``poll_interval``)."""
        if not self._up:
            return
        try:
            await self._poll()
        except _REDIS_DOWN as exc:
            self._went_down(exc)

    async def _poll(self) -> None:
        self.stats.round_trips += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._seq_key)
            pipe.zrangebyscore(self._changes_key, f"({self._seq}", "+inf", withscores=True)
            seq_text, changed = await pipe.execute()
        seq = int(seq_text or 0)
        if seq < self._seq:  # Redis lost its data (restart without persistence)
            self._seq = 0
            self._views.clear()
            return
        if not changed:
            return
        keys = [str(k) for k, _ in changed]
        self.stats.round_trips += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key + ":state")
            states = await pipe.execute()
        for key, st in zip(keys, states, strict=True):
            self._views[key] = _view_of(st)
        self._seq = max(self._seq, *(int(score) for _, score in changed))

    async def _poll_loop(self) -> None:
        while True:
            if self._up:
                await self.refresh()
                await asyncio.sleep(self.config.poll_interval)
                continue
            await asyncio.sleep(self.config.retry_interval)
            try:
                self.stats.round_trips += 1
                await self._redis.ping()
            except _REDIS_DOWN:
                continue
            await self._came_back()

    async def _renew_loop(self) -> None:
        period = self.config.connection_ttl / 3
        ttl_ms = int(self.config.connection_ttl * 1000)
        while True:
            await asyncio.sleep(period)
            if not self._up or not self._held:
                continue
            try:
                for key, members in list(self._held.items()):
                    if members:
                        self.stats.round_trips += 1
                        await self._renew(keys=[key + ":conn"], args=[ttl_ms, *members])
            except _REDIS_DOWN as exc:
                self._went_down(exc)

    # -- up and down -------------------------------------------------------------------
    def _went_down(self, exc: BaseException) -> None:
        if not self._up:
            return
        self._up = False
        self.stats.fallbacks += 1
        log.warning("Redis unreachable (%r: %s): local limits x %g", exc, exc, self.config.share)
        self._fire(
            {
                "kind": "cluster_fallback",
                "time": time.time(),
                "node": self.node_id,
                "detail": f"Redis unreachable: {exc!r}; local limits x {self.config.share:g}",
            }
        )

    async def _came_back(self) -> None:
        # Connections opened before the outage are dead: drop them all rather
        # than fail once on each.
        await self._redis.connection_pool.disconnect()
        self._up = True
        self.stats.recoveries += 1
        # Slots admitted locally are not in Redis: they end here as they finish,
        # so the cluster may exceed its caps by them for one attempt's time.
        log.warning("Redis reachable again: sharing resumed")
        self._fire({"kind": "cluster_resumed", "time": time.time(), "node": self.node_id})
        if self._queue:
            self._queued.set()

    def _fire(self, event: dict[str, Any]) -> None:
        if self._emit is not None:
            self._emit(event)


# Engine events this long after evidence from another node was applied to the
# same key are its echo, not news.
_ECHO_WINDOW = 5.0

_PUBLISHED = frozenset(
    {"destination_throttled", "destination_suspended", "structural_failure", "structural_cleared"}
)


def _view_of(st: Mapping[str, str]) -> _View:
    def num(name: str) -> float | None:
        value = st.get(name)
        return None if value is None else float(value)

    conc = num("conc")
    susp = num("susp")
    return _View(
        concurrency=None if conc is None else int(conc),
        interval_ms=num("interval"),
        suspended_until=None if susp is None else susp / 1000.0,
        structural=st.get("structural") == "1",
        reply=st.get("reply", ""),
        origin=st.get("origin", ""),
    )
