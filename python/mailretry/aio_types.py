"""What :class:`mailretry.aio.Driver` talks to: the sender, the engine, an
observer and a shared-limits layer, as protocols. Imported from
:mod:`mailretry.aio` as well."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from mailretry._core import Decision, Lease, Reply

__all__ = ["DriverObserver", "EngineLike", "Sender", "SharedAdmission", "SharedLimits"]

MsgT_contra = TypeVar("MsgT_contra", contravariant=True)


class Sender(Protocol[MsgT_contra]):
    """Makes one delivery attempt.

    ``send`` returns the server's final reply to the attempt as text (``"250
    2.0.0 OK"``, ``"550 5.1.1 ..."``, multi-line as received) or a
    :class:`~mailretry.Reply` from :func:`mailretry.transport_reply` when no
    reply was received. It should not raise. If it does, or returns something
    that is not a reply (``None``, a number, an empty or malformed text), the
    driver calls ``on_error``, counts it in ``DriverStats.send_errors`` and
    reports the attempt at once as a transport failure
    (``connection_dropped``), so the message goes back to its schedule now
    rather than when its lease times out.
    """

    async def send(self, lease: Lease, message: MsgT_contra) -> str | Reply: ...


class EngineLike(Protocol):
    """What the driver needs from an engine (:class:`~mailretry.Engine`, durable
    or not)."""

    def submit(
        self,
        msg_id: int,
        destination: str,
        now: float,
        *,
        source: str | None = None,
        not_before: float | None = None,
    ) -> None: ...
    def advance(self, now: float) -> None: ...
    def take_ready(self, now: float, limit: int) -> list[Lease]: ...
    def report(self, lease: Lease, now: float, reply: str | Reply) -> Decision: ...
    def next_wakeup(self) -> float | None: ...
    def drain_events(self) -> list[dict[str, Any]]: ...
    def destination(self, name: str, source: str | None = None) -> dict[str, Any]: ...


class DriverObserver(Protocol):
    """Watches a :class:`Driver` (e.g. :class:`mailretry.metrics.Metrics`)."""

    def on_event(self, event: dict[str, Any]) -> None:
        """Every engine event, in order (with ``domain`` when known)."""
        ...

    def on_attempt(
        self, lease: Lease, outcome: str | Reply, decision: Decision | None, seconds: float
    ) -> None:
        """A finished attempt: what was reported, the engine's decision (None
        when the report was refused as late) and its real duration."""
        ...


class SharedAdmission(Protocol):
    """A :class:`SharedLimits` gate's answer for one lease."""

    @property
    def admitted(self) -> bool: ...

    @property
    def reply(self) -> str | None: ...


class SharedLimits(Protocol):
    """Destination state shared with other nodes (:class:`mailretry.cluster.RedisShared`).

    The driver calls :meth:`start` when it runs, :meth:`admit` before each
    attempt and :meth:`release` after it, and passes every engine event to
    :meth:`observe`. An admission that is not admitted either carries a
    ``reply`` learned from another node (the driver reports it without
    sending) or none (the lease could not be admitted before its deadline: it
    is left to time out and the engine reschedules the message).
    """

    async def start(self, emit: Callable[[dict[str, Any]], None] | None = None) -> None: ...
    async def stop(self) -> None: ...
    async def admit(self, lease: Lease, give_up_at: float | None = None) -> Any: ...
    async def release(self, admission: Any) -> None: ...
    def observe(self, event: dict[str, Any]) -> None: ...
