"""A ready :class:`~mailretry.aio.Sender` on aiosmtplib (``pip install mailretry[smtp]``).

:class:`SmtpSender` keeps one connection pool per (destination, source). A pool
never holds more connections than the engine's *current* concurrency limit for
that destination (``engine.destination(name)["concurrency_limit"]``): when the
engine cuts the limit after a ``421 4.7.0 too many connections``, surplus
connections are closed as their attempts finish. Connections are reused for up
to ``max_messages_per_connection`` transactions and closed after ``idle_timeout``
seconds unused.

Every outcome becomes something :meth:`mailretry.Engine.report` takes:

* a reply from the server (greeting, EHLO, MAIL, RCPT, DATA) is returned as
  its full text, code and enhanced code included (``"550 5.1.1 ..."``; a
  multi-line reply keeps its lines);
* no reply: :func:`mailretry.transport_reply` with ``"dns_failure"`` (the
  resolver failed or the host name does not resolve), ``"connection_refused"``,
  ``"connect_timeout"`` (no TCP connection or no greeting in time),
  ``"tls_failure"`` (STARTTLS handshake or certificate) or
  ``"connection_dropped"`` (the connection closed or a reply timed out in the
  middle of a transaction).

A connection lost after the message data was sent but before the server's
reply to it is reported as ``connection_dropped``: the message is tried again,
and the recipient may get it twice (RFC 1047). That is the at-least-once edge
of SMTP itself.

One :class:`OutgoingMessage` has one recipient: the engine keeps retry state per
message id, so a platform gives each recipient its own id.

Times here (``connect_timeout`` and so on) are real seconds on the event loop:
they bound network waits and are independent of the driver's clock. Keep them
well below the engine's ``lease_timeout``.
"""

from __future__ import annotations

import email.message
import email.policy
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailretry._core import Lease, Reply
from mailretry.classify import transport_reply

try:
    import aiosmtplib
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError("mailretry.smtp needs aiosmtplib: pip install 'mailretry[smtp]'") from _err

__all__ = [
    "DnsFailure",
    "Endpoint",
    "ImplicitMxResolver",
    "LimitSource",
    "OutgoingMessage",
    "Resolver",
    "SenderStats",
    "SmtpSender",
    "StaticResolver",
    "format_reply",
]


# -- messages and resolution -------------------------------------------------------
@dataclass(frozen=True)
class OutgoingMessage:
    """One message to one recipient.

    ``content`` is the message as sent after DATA: bytes, an ASCII string or an
    :class:`email.message.EmailMessage` (serialised with the SMTP policy).
    """

    sender: str
    recipient: str
    content: bytes | str | email.message.EmailMessage
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()

    def data(self) -> bytes:
        """The DATA payload as bytes ending in CRLF."""
        if isinstance(self.content, email.message.EmailMessage):
            raw = self.content.as_bytes(policy=email.policy.SMTP)
        elif isinstance(self.content, str):
            raw = self.content.encode("ascii")
        else:
            raw = self.content
        return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


@dataclass(frozen=True)
class Endpoint:
    """A mail exchanger to connect to."""

    host: str
    port: int = 25


class DnsFailure(Exception):
    """Raised by a resolver when the destination's mail exchangers cannot be
    found right now (SERVFAIL, timeout); reported as ``dns_failure``."""


class LimitSource(Protocol):
    """Where a pool's bound comes from: an Engine or a DurableEngine."""

    def destination(self, name: str, source: str | None = None) -> dict[str, Any]: ...


class Resolver(Protocol):
    """Maps a destination (domain) to its mail exchangers, most preferred first."""

    async def resolve(self, destination: str) -> Sequence[Endpoint]: ...


class StaticResolver:
    """A fixed table, e.g. ``{"example.com": [Endpoint("127.0.0.1", 2525)]}``.
    An unknown destination is a :class:`DnsFailure`."""

    def __init__(self, table: Mapping[str, Endpoint | Sequence[Endpoint]]) -> None:
        self._table: dict[str, list[Endpoint]] = {}
        for name, value in table.items():
            self._table[name.lower()] = [value] if isinstance(value, Endpoint) else list(value)

    async def resolve(self, destination: str) -> Sequence[Endpoint]:
        try:
            return self._table[destination.lower()]
        except KeyError:
            raise DnsFailure(f"no mail exchanger configured for {destination}") from None


class ImplicitMxResolver:
    """Connects to the destination name itself on ``port`` (the RFC 5321
    implicit MX). Real MX lookups need a DNS library: plug one in through
    :class:`Resolver`. A name that does not resolve is reported at connect
    time as ``dns_failure``."""

    def __init__(self, port: int = 25) -> None:
        self._port = port

    async def resolve(self, destination: str) -> Sequence[Endpoint]:
        return [Endpoint(destination, self._port)]


# -- replies ---------------------------------------------------------------------
def format_reply(code: int, message: str) -> str:
    """Rebuild the reply as the server sent it from aiosmtplib's (code, message):
    ``format_reply(550, "5.1.1 User unknown") == "550 5.1.1 User unknown"``;
    multi-line messages become ``code-line`` lines and a last ``code line``."""
    lines = message.split("\n") if message else [""]
    last = len(lines) - 1
    return "\r\n".join(
        f"{code}{'-' if i < last else ' '}{line}".rstrip() for i, line in enumerate(lines)
    )


class _NoConnection(Exception):
    """Internal: connecting produced an outcome instead of a connection."""

    def __init__(self, outcome: str | Reply) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _transport_for_connect_error(exc: BaseException) -> Reply:
    detail = str(exc)
    chain = _chain(exc)
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return transport_reply("tls_failure", detail)
    if any(isinstance(e, socket.gaierror) for e in chain):
        return transport_reply("dns_failure", detail)
    if any(isinstance(e, aiosmtplib.SMTPConnectTimeoutError | TimeoutError) for e in chain):
        return transport_reply("connect_timeout", detail)
    if any(isinstance(e, aiosmtplib.SMTPServerDisconnected) for e in chain):
        return transport_reply("connection_dropped", detail)
    return transport_reply("connection_refused", detail)


# -- the sender --------------------------------------------------------------------
@dataclass
class SenderStats:
    """Connection counters of an :class:`SmtpSender`."""

    connections_opened: int = 0
    connections_reused: int = 0
    connections_closed: int = 0
    connect_failures: int = 0
    transactions: int = 0
    #: most connections open at once per destination
    peak_open: dict[str, int] = field(default_factory=dict)


@dataclass
class _Conn:
    client: aiosmtplib.SMTP
    uses: int = 0
    last_used: float = 0.0


@dataclass
class _Pool:
    idle: list[_Conn] = field(default_factory=list)
    open: int = 0  # idle + busy + connecting


class SmtpSender:
    """Delivers leases over SMTP with aiosmtplib.

    Parameters
    ----------
    engine
        Where each destination's current concurrency limit is read from (an
        Engine or DurableEngine); or pass ``limit`` instead.
    resolver
        Destination to mail exchangers (:class:`StaticResolver` in tests).
    limit
        ``limit(destination, source) -> int`` overriding the engine lookup.
    local_hostname
        Name sent with EHLO (default: this host's FQDN, via aiosmtplib).
    connect_timeout, command_timeout, data_timeout
        Real seconds for TCP connect plus greeting, for each command, and for
        the reply to the message data.
    start_tls
        ``None``: upgrade when the server offers STARTTLS; ``True``: require it
        (a server without it is a ``tls_failure``); ``False``: never.
    tls_context, validate_certs
        Passed to aiosmtplib.
    max_messages_per_connection
        Transactions before a connection is closed and replaced.
    idle_timeout
        Seconds an unused connection is kept open.
    """

    def __init__(
        self,
        engine: LimitSource | None = None,
        resolver: Resolver | None = None,
        *,
        limit: Callable[[str, str], int] | None = None,
        local_hostname: str | None = None,
        connect_timeout: float = 30.0,
        command_timeout: float = 60.0,
        data_timeout: float = 300.0,
        start_tls: bool | None = None,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        max_messages_per_connection: int = 100,
        idle_timeout: float = 30.0,
    ) -> None:
        if limit is None:
            if engine is None:
                raise TypeError("SmtpSender needs an engine or a limit callable")
            limit = _engine_limit(engine)
        self._limit = limit
        self._resolver: Resolver = resolver or ImplicitMxResolver()
        self._local_hostname = local_hostname
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._data_timeout = data_timeout
        self._start_tls = start_tls
        self._tls_context = tls_context
        self._validate_certs = validate_certs
        self._max_uses = max(1, max_messages_per_connection)
        self._idle_timeout = idle_timeout
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._closed = False
        self.stats = SenderStats()

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def open_connections(self, destination: str, source: str = "") -> int:
        """Connections open (idle, busy or connecting) to a destination."""
        pool = self._pools.get((destination.lower(), source))
        return 0 if pool is None else pool.open

    async def aclose(self) -> None:
        """Close every idle connection (QUIT). Attempts in flight keep theirs
        until they finish, then close them."""
        self._closed = True
        for pool in self._pools.values():
            idle, pool.idle = pool.idle, []
            for conn in idle:
                pool.open -= 1
                await self._quit(conn)

    # -- Sender protocol -----------------------------------------------------------
    async def send(self, lease: Lease, message: OutgoingMessage) -> str | Reply:
        """One attempt: a connection from the pool, MAIL, RCPT, DATA."""
        key = (lease.destination.lower(), lease.source)
        pool = self._pools.setdefault(key, _Pool())
        try:
            conn = await self._acquire(pool, lease.destination)
        except _NoConnection as failure:
            return failure.outcome
        outcome: str | Reply = transport_reply("connection_dropped", "attempt did not finish")
        reusable = False
        try:
            outcome, reusable = await self._transaction(conn, message)
        finally:
            await self._release(pool, conn, reusable, lease)
        return outcome

    # -- pool --------------------------------------------------------------------
    async def _acquire(self, pool: _Pool, destination: str) -> _Conn:
        now = time.monotonic()
        while pool.idle:
            conn = pool.idle.pop()
            if conn.client.is_connected and now - conn.last_used < self._idle_timeout:
                self.stats.connections_reused += 1
                return conn
            pool.open -= 1
            await self._quit(conn)
        pool.open += 1
        self.stats.peak_open[destination] = max(self.stats.peak_open.get(destination, 0), pool.open)
        try:
            return _Conn(await self._connect(destination))
        except BaseException:
            pool.open -= 1
            self.stats.connect_failures += 1
            raise

    async def _release(self, pool: _Pool, conn: _Conn, reusable: bool, lease: Lease) -> None:
        conn.uses += 1
        conn.last_used = time.monotonic()
        keep = (
            reusable
            and not self._closed
            and conn.client.is_connected
            and conn.uses < self._max_uses
            and pool.open <= max(1, self._limit(lease.destination, lease.source))
        )
        if keep:
            pool.idle.append(conn)
            return
        pool.open -= 1
        await self._quit(conn)

    async def _quit(self, conn: _Conn) -> None:
        self.stats.connections_closed += 1
        client = conn.client
        if client.is_connected:
            try:
                await client.quit(timeout=self._command_timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    # -- connect -------------------------------------------------------------------
    async def _connect(self, destination: str) -> aiosmtplib.SMTP:
        try:
            endpoints = list(await self._resolver.resolve(destination))
        except DnsFailure as exc:
            raise _NoConnection(transport_reply("dns_failure", str(exc))) from exc
        if not endpoints:
            raise _NoConnection(
                transport_reply("dns_failure", f"no mail exchanger for {destination}")
            )
        outcome: str | Reply = transport_reply("connection_refused")
        for endpoint in endpoints:  # most preferred first; the next one on failure
            client = aiosmtplib.SMTP(
                hostname=endpoint.host,
                port=endpoint.port,
                local_hostname=self._local_hostname,
                timeout=self._command_timeout,
                start_tls=self._start_tls,
                tls_context=self._tls_context,
                validate_certs=self._validate_certs,
            )
            try:
                await client.connect(timeout=self._connect_timeout)
                await self._hello(client)
            except aiosmtplib.SMTPResponseException as exc:
                # The server answered (greeting, EHLO or STARTTLS refused).
                client.close()
                outcome = format_reply(exc.code, exc.message)
                continue
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                client.close()
                if isinstance(exc, aiosmtplib.SMTPException) and "STARTTLS" in str(exc):
                    outcome = transport_reply("tls_failure", str(exc))
                else:
                    outcome = _transport_for_connect_error(exc)
                continue
            self.stats.connections_opened += 1
            return client
        raise _NoConnection(outcome)

    async def _hello(self, client: aiosmtplib.SMTP) -> None:
        if not client.is_ehlo_or_helo_needed:
            return
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError as exc:
            if exc.code >= 500 and client.is_connected:
                await client.helo()  # servers that do not know EHLO
            else:
                raise

    # -- one transaction -----------------------------------------------------------
    async def _transaction(self, conn: _Conn, message: OutgoingMessage) -> tuple[str | Reply, bool]:
        client = conn.client
        self.stats.transactions += 1
        try:
            await client.mail(message.sender, options=list(message.mail_options))
            await client.rcpt(message.recipient, options=list(message.rcpt_options))
            response = await client.data(message.data(), timeout=self._data_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            text = format_reply(exc.code, exc.message)
            if exc.code == 421 or not client.is_connected:
                client.close()
                return text, False
            return text, await self._reset(client)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            return transport_reply("connection_dropped", str(exc) or type(exc).__name__), False
        return format_reply(response.code, response.message), True

    async def _reset(self, client: aiosmtplib.SMTP) -> bool:
        """RSET after a refused transaction; False when the connection is unusable."""
        try:
            response = await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
            return False
        return response.code == 250


def _engine_limit(engine: LimitSource) -> Callable[[str, str], int]:
    def limit(destination: str, source: str) -> int:
        return int(engine.destination(destination, source or None)["concurrency_limit"])

    return limit
