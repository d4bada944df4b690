"""A receiving SMTP server for end-to-end tests (aiosmtpd, loopback only).

One listening port per destination. Each destination has :class:`Limits` that
are enforced per client address and can be changed (lifted) while it runs:

* ``max_connections``: concurrent connections; one more is greeted with
  ``421 4.7.0 Too many connections`` and closed;
* ``rate``: accepted messages per window; MAIL beyond it gets
  ``421 4.7.28 ... rate limited`` and the connection is closed;
* ``greylist_for``: a new (client, sender, recipient) triple is deferred with
  ``450 4.2.0 ... Greylisted`` until that many seconds after it was first seen;
* ``unknown_users``: these local parts are refused with ``550 5.1.1``;
* ``defer_all``: every RCPT gets this reply (a destination that never accepts).

Time for windows comes from the ``clock`` callable, so a test can share its
virtual clock with the driver. Each accepted message is recorded with the value
of its ``X-Mailretry-Id`` header, which is how tests check "exactly once".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

ID_HEADER = re.compile(rb"^X-Mailretry-Id:\s*(\d+)\s*$", re.MULTILINE | re.IGNORECASE)

REPLY_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your host, try again later"
REPLY_RATE = "421 4.7.28 Rate limited: too many messages from your host, slow down"
REPLY_GREYLISTED = "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, try again later"
REPLY_UNKNOWN_USER = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"


@dataclass
class Limits:
    """What one destination enforces; mutable at runtime."""

    max_connections: int | None = None
    rate: tuple[int, float] | None = None  # (messages, per seconds)
    greylist_for: float | None = None
    unknown_users: frozenset[str] = frozenset()
    defer_all: str | None = None
    data_delay: float = 0.0  # real seconds before answering the message data


@dataclass
class DestinationLog:
    """What one destination saw."""

    received: list[tuple[float, int]] = field(default_factory=list)  # (time, msg id)
    sessions: int = 0  # connections greeted with 220
    rejected_connections: int = 0  # greeted with 421 4.7.0
    open: Counter[str] = field(default_factory=Counter)  # per client, now
    peak_open: int = 0  # most concurrent connections from one client (incl. rejected)
    connects: list[tuple[float, int]] = field(default_factory=list)  # (time, open after connect)
    # In order: ("connect", connections open from that client incl. this one) and
    # ("accept", message id).
    timeline: list[tuple[str, int]] = field(default_factory=list)
    replies: Counter[str] = field(default_factory=Counter)  # "421 4.7.28" -> count
    reply_times: list[tuple[float, str]] = field(default_factory=list)


class _Handler:
    def __init__(self, server: SmtpTestServer, name: str) -> None:
        self._server = server
        self._name = name

    def _reply(self, text: str) -> str:
        return self._server._note_reply(self._name, text)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        limits = self._server.limits(self._name)
        if limits.rate is not None:
            messages, per = limits.rate
            window = self._server._window(self._name, _client(session))
            now = self._server.now()
            while window and window[0] <= now - per:
                window.popleft()
            if len(window) >= messages:
                return self._reply(REPLY_RATE)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        limits = self._server.limits(self._name)
        if limits.defer_all is not None:
            return self._reply(limits.defer_all)
        local = address.split("@", 1)[0].lower()
        if local in limits.unknown_users:
            return self._reply(REPLY_UNKNOWN_USER.format(rcpt=address))
        if limits.greylist_for is not None:
            key = (_client(session), str(envelope.mail_from), address.lower())
            now = self._server.now()
            first = self._server._greylist.setdefault((self._name, *key), now)
            if now - first < limits.greylist_for:
                return self._reply(REPLY_GREYLISTED.format(rcpt=address))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        match = ID_HEADER.search(content)
        msg_id = int(match.group(1)) if match else -1
        self._server._accept(self._name, _client(session), msg_id)
        await self._server._gate_wait()
        delay = self._server.limits(self._name).data_delay
        if delay > 0:
            await asyncio.sleep(delay)
        return f"250 2.0.0 Ok: queued as {msg_id}"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if isinstance(server, _Session):
            server.closing()
        return "221 2.0.0 Bye"


def _client(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class _Session(SMTP):
    """One connection; enforces the connection cap at the greeting."""

    def __init__(self, server: SmtpTestServer, name: str) -> None:
        super().__init__(
            _Handler(server, name),
            hostname=f"mx.{name}",
            ident="mailretry-test-server",
            loop=asyncio.get_running_loop(),
        )
        self._server = server
        self._name = name
        self._client_addr = ""
        self._counted = False
        self._rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted and self.transport is None:
            peer = transport.get_extra_info("peername")
            self._client_addr = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            self._rejected = not self._server._connect(self._name, self._client_addr)
            self._counted = True
        super().connection_made(transport)

    def closing(self) -> None:
        """The session is over (QUIT or connection lost): stop counting it."""
        if self._counted:
            self._counted = False
            self._server._disconnect(self._name, self._client_addr)

    def connection_lost(self, error: Exception | None) -> None:
        self.closing()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._rejected:
            await self.push(self._server._note_reply(self._name, REPLY_TOO_MANY_CONNECTIONS))
            return
        await super()._handle_client()

    async def push(self, status: Any) -> None:
        await super().push(status)
        text = status.decode() if isinstance(status, bytes) else str(status)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()  # 421: the server closes the channel


class SmtpTestServer:
    """Test receiving server; ``await start()`` inside a running event loop.

    Parameters
    ----------
    clock
        Time for rate windows and greylisting (epoch seconds).
    host
        Address to listen on (loopback).
    """

    def __init__(self, clock: Callable[[], float] = time.time, host: str = "127.0.0.1") -> None:
        self.now = clock
        self.host = host
        self._limits: dict[str, Limits] = {}
        self._logs: dict[str, DestinationLog] = {}
        self._ports: dict[str, int] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._greylist: dict[tuple[str, str, str, str], float] = {}
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hold_after: int | None = None
        self.held = 0  # DATA replies being held back by hold_after()
        self.total_received = 0

    # -- configuration -------------------------------------------------------------
    def add_destination(self, name: str, limits: Limits | None = None) -> None:
        self._limits[name] = limits or Limits()
        self._logs[name] = DestinationLog()

    def limits(self, name: str) -> Limits:
        """The live limits of a destination (assign its fields to change them)."""
        return self._limits[name]

    def lift(self, name: str) -> None:
        """Remove the connection cap, rate ceiling, greylisting and deferral."""
        old = self._limits[name]
        self._limits[name] = Limits(unknown_users=old.unknown_users, data_delay=old.data_delay)

    def hold_after(self, count: int | None) -> None:
        """Once ``count`` messages have been received in total, record further
        messages but hold back the reply to their data until :meth:`release`."""
        self._hold_after = count

    def release(self) -> None:
        """Stop holding replies (callable from any thread)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self._loop is not None and running is not self._loop:
            self._loop.call_soon_threadsafe(self._release)
        else:
            self._release()

    def _release(self) -> None:
        self._hold_after = None
        if self._gate is not None:
            self._gate.set()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._gate = asyncio.Event()
        self._gate.set()
        for name in self._limits:
            srv = await loop.create_server(functools.partial(_Session, self, name), self.host, 0)
            self._servers.append(srv)
            self._ports[name] = srv.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release()
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 5)
        self._servers.clear()

    # -- observation -----------------------------------------------------------------
    def port(self, name: str) -> int:
        return self._ports[name]

    def log(self, name: str) -> DestinationLog:
        return self._logs[name]

    def received_ids(self) -> Counter[int]:
        """How many times each message id was accepted, over all destinations."""
        counts: Counter[int] = Counter()
        for log in self._logs.values():
            counts.update(msg_id for _, msg_id in log.received)
        return counts

    # -- internals -------------------------------------------------------------------
    def _window(self, name: str, client: str) -> deque[float]:
        return self._windows[(name, client)]

    def _note_reply(self, name: str, text: str) -> str:
        log = self._logs[name]
        key = text[:9]
        log.replies[key] += 1
        log.reply_times.append((self.now(), key))
        return text

    def _connect(self, name: str, client: str) -> bool:
        log = self._logs[name]
        log.open[client] += 1
        open_now = log.open[client]
        log.peak_open = max(log.peak_open, open_now)
        log.connects.append((self.now(), open_now))
        log.timeline.append(("connect", open_now))
        cap = self._limits[name].max_connections
        if cap is not None and open_now > cap:
            log.rejected_connections += 1
            return False
        log.sessions += 1
        return True

    def _disconnect(self, name: str, client: str) -> None:
        self._logs[name].open[client] -= 1

    def _accept(self, name: str, client: str, msg_id: int) -> None:
        now = self.now()
        self._logs[name].received.append((now, msg_id))
        self._logs[name].timeline.append(("accept", msg_id))
        self._windows[(name, client)].append(now)
        self.total_received += 1
        if self._hold_after is not None and self.total_received > self._hold_after:
            assert self._gate is not None
            self._gate.clear()

    async def _gate_wait(self) -> None:
        assert self._gate is not None
        if not self._gate.is_set():
            self.held += 1
            try:
                await self._gate.wait()
            finally:
                self.held -= 1


@contextlib.contextmanager
def threaded_server(server: SmtpTestServer) -> Iterator[SmtpTestServer]:
    """Run ``server`` on its own event loop in a background thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="smtp-test-server", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("test SMTP server did not start")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
