"""A ready :class:`~mailretry.aio.Sender` on aiosmtplib (``pip install mailretry[smtp]``).

:class:`SmtpSender` keeps one connection pool per (destination, source). A pool
never holds more connections than the engine's *current* concurrency limit for
that destination (``engine.concurrency_limit(name)``, re-read only when
``engine.limits_generation()`` says a limit may have changed): when the
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

Times here (``connect_timeout``, ``attempt_timeout`` and so on) are real
seconds on the event loop: they bound network waits and are independent of the
driver's clock. ``attempt_timeout`` must stay below the engine's
``lease_timeout`` converted to real seconds (with a compressed
:class:`~mailretry.aio.VirtualClock` at speed 120, a 10 min lease is 5 real
seconds); :class:`~mailretry.aio.Driver` refuses to run otherwise.

Real delivery: the default resolver is :class:`~mailretry.dns.MxResolver` (MX
lookup, preference order, implicit MX, null MX, TTL cache), STARTTLS is
opportunistic (``tls="opportunistic"``), a lease's ``source`` binds the local
address given in ``sources``, :meth:`SmtpSender.route` rolls domains up to
the site of their MX set, and ``mta_sts`` (:class:`~mailretry.mtasts.MtaSts`)
applies each recipient domain's MTA-STS policy.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mailretry._core import Lease, Reply
from mailretry.classify import transport_reply
from mailretry.dns import DnsFailure, Endpoint, MxResolver, PermanentDnsFailure
from mailretry.errors import InvalidInputError
from mailretry.mtasts import MtaSts, MtaStsPolicy
from mailretry.smtp_session import Conn, SenderStats, transaction
from mailretry.smtp_types import (
    TLS_POLICIES,
    ImplicitMxResolver,
    LimitSource,
    OutgoingMessage,
    Resolver,
    SourceAddress,
    StaticResolver,
    TlsPolicy,
    _NoConnection,
    _transport_for_connect_error,
    format_reply,
)

try:
    import aiosmtplib
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError("mailretry.smtp needs aiosmtplib: pip install 'mailretry[smtp]'") from _err

__all__ = [
    "TLS_POLICIES",
    "DnsFailure",
    "Endpoint",
    "ImplicitMxResolver",
    "LimitSource",
    "MxResolver",
    "OutgoingMessage",
    "PermanentDnsFailure",
    "Resolver",
    "SenderStats",
    "SmtpSender",
    "SourceAddress",
    "StaticResolver",
    "TlsPolicy",
    "format_reply",
]


# -- the sender --------------------------------------------------------------------
@dataclass
class _Pool:
    idle: list[Conn] = field(default_factory=list)
    open: int = 0  # idle + busy + connecting


class SmtpSender:
    """Delivers leases over SMTP with aiosmtplib.

    Parameters
    ----------
    engine
        Where each destination's current concurrency limit is read from (an
        :class:`~mailretry.Engine`); or pass ``limit`` instead. With an
        engine that has ``limits_generation`` (:class:`~mailretry.Engine`
        does), limits are cached and re-read after any limit may have
        changed, so a cut is still seen at the next connection's release.
    resolver
        Destination to mail exchangers. Default: :class:`~mailretry.dns.MxResolver`
        (MX lookup with dnspython, system resolvers); :class:`StaticResolver`
        in tests.
    limit
        ``limit(destination, source) -> int`` overriding the engine lookup.
    local_hostname
        Name sent with EHLO when the lease has no source (default: this host's
        FQDN, via aiosmtplib).
    sources
        Source name (``Lease.source``, chosen by the platform at submit) to
        :class:`SourceAddress`: the local address connections bind to and the
        EHLO name. A lease whose source is not in the map fails with
        :class:`~mailretry.errors.InvalidInputError`; the empty source uses the
        host's default address and ``local_hostname``.
    connect_timeout, command_timeout, data_timeout
        Real seconds for TCP connect plus greeting, for each command, and for
        the reply to the message data.
    attempt_timeout
        Real seconds for a whole attempt (all MX hosts, STARTTLS, the
        transaction); past it the attempt is ``connection_dropped``. Keep it
        below the engine's ``lease_timeout`` in real seconds
        (:class:`~mailretry.aio.Driver` checks).
    tls
        :data:`TlsPolicy` for every destination, or a callable
        ``tls(destination) -> TlsPolicy`` (e.g. from MTA-STS or DANE data).
        Default ``"opportunistic"``.
    tls_context
        For ``"verify"`` (default: the system's CA bundle).
    plain_after_tls_failure
        After an opportunistic handshake failed with a host, use plain text
        with that host for this many seconds without trying STARTTLS again.
    max_messages_per_connection
        Transactions before a connection is closed and replaced.
    max_rejections_per_connection
        Close a connection after this many transactions in a row were refused
        (4xx/5xx). A ``421`` always closes it (the server is closing too).
        Servers slow down or disconnect clients that keep erring on one
        connection (Postfix: ``smtpd_soft_error_limit``, ``smtpd_hard_error_limit``).
    idle_timeout
        Seconds an unused connection is kept open.
    rollup
        :meth:`route` names the destination by its MX set (the site) instead
        of the domain, so that domains sharing mail exchangers share limits.
    mta_sts
        A :class:`~mailretry.mtasts.MtaSts`: each attempt looks up the
        recipient domain's policy. ``enforce``: only matching MX hosts, only
        with a verified certificate (``tls_failure`` otherwise), whatever
        ``tls`` says; ``testing``: delivered as usual, refusals only counted
        and passed to ``mta_sts_report``.
    mta_sts_report
        ``mta_sts_report(domain, mx_host, reason)`` for each refusal an
        MTA-STS policy makes or (in testing mode) would make.
    """

    def __init__(
        self,
        engine: LimitSource | None = None,
        resolver: Resolver | None = None,
        *,
        limit: Callable[[str, str], int] | None = None,
        local_hostname: str | None = None,
        sources: Mapping[str, SourceAddress] | None = None,
        connect_timeout: float = 30.0,
        command_timeout: float = 60.0,
        data_timeout: float = 300.0,
        attempt_timeout: float = 540.0,
        tls: TlsPolicy | Callable[[str], TlsPolicy] = "opportunistic",
        tls_context: ssl.SSLContext | None = None,
        plain_after_tls_failure: float = 3600.0,
        max_messages_per_connection: int = 100,
        max_rejections_per_connection: int = 3,
        idle_timeout: float = 30.0,
        rollup: bool = True,
        mta_sts: MtaSts | None = None,
        mta_sts_report: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if limit is None:
            if engine is None:
                raise TypeError("SmtpSender needs an engine or a limit callable")
            limit = _engine_limit(engine)
        if isinstance(tls, str) and tls not in TLS_POLICIES:
            raise InvalidInputError(f"tls must be one of {TLS_POLICIES}, got {tls!r}")
        for value, name in (
            (connect_timeout, "connect_timeout"),
            (command_timeout, "command_timeout"),
            (data_timeout, "data_timeout"),
            (attempt_timeout, "attempt_timeout"),
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be > 0, got {value!r}")
        if max_rejections_per_connection < 1:
            raise InvalidInputError("max_rejections_per_connection must be >= 1")
        self._limit = limit
        self._resolver: Resolver = resolver or MxResolver()
        self._local_hostname = local_hostname
        self._sources: dict[str, SourceAddress] = dict(sources or {})
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._data_timeout = data_timeout
        self._attempt_timeout = attempt_timeout
        self._tls = tls
        self._tls_context = tls_context
        self._plain_after_tls_failure = plain_after_tls_failure
        self._plain_until: dict[tuple[str, int], float] = {}
        self._max_uses = max(1, max_messages_per_connection)
        self._max_rejections = max_rejections_per_connection
        self._idle_timeout = idle_timeout
        self._rollup = rollup
        self._mta_sts = mta_sts
        self._mta_sts_report = mta_sts_report
        self._site_domains: dict[str, str] = {}
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._closed = False
        self.stats = SenderStats()

    @property
    def attempt_timeout(self) -> float:
        """Real seconds an attempt may take at most."""
        return self._attempt_timeout

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def open_connections(self, destination: str, source: str = "") -> int:
        """Connections open (idle, busy or connecting) to a destination."""
        pool = self._pools.get((destination.lower(), source))
        return 0 if pool is None else pool.open

    async def route(self, domain: str) -> str:
        """The engine destination for mail to ``domain``: with ``rollup``, the
        site of its MX set (see :func:`mailretry.dns.site_name`), else the
        domain. When the MX set cannot be found now, the domain itself."""
        domain = domain.strip().lower().rstrip(".")
        site_of = getattr(self._resolver, "site", None)
        if not self._rollup or site_of is None:
            return domain
        site = str(await site_of(domain))
        if site != domain:
            self._site_domains[site] = domain
        return site

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
        try:
            async with asyncio.timeout(self._attempt_timeout):
                return await self._send(lease, message)
        except TimeoutError:
            self.stats.attempt_timeouts += 1
            return transport_reply(
                "connection_dropped", f"attempt took longer than {self._attempt_timeout:g} s"
            )

    async def _send(self, lease: Lease, message: OutgoingMessage) -> str | Reply:
        key = (lease.destination.lower(), lease.source)
        pool = self._pools.setdefault(key, _Pool())
        sts: MtaStsPolicy | None = None
        if self._mta_sts is not None:
            # The recipient domain's policy, not the (rolled-up) destination's.
            sts = await self._mta_sts.policy(message.recipient.rpartition("@")[2])
            if sts is not None and sts.mode == "none":
                sts = None
        try:
            conn = await self._acquire(pool, lease, message, sts)
        except _NoConnection as failure:
            return failure.outcome
        outcome: str | Reply = transport_reply("connection_dropped", "attempt did not finish")
        reusable = False
        try:
            outcome, reusable = await transaction(
                conn, message, self.stats, self._command_timeout, self._data_timeout
            )
        except BaseException:
            conn.client.close()  # interrupted (attempt timeout, shutdown)
            raise
        finally:
            await self._release(pool, conn, reusable, lease)
        return outcome

    # -- pool --------------------------------------------------------------------
    def _lookup_name(self, destination: str, message: OutgoingMessage) -> str:
        """The domain to resolve for a lease's destination."""
        name = destination.lower()
        if name in self._site_domains:
            return self._site_domains[name]
        if any(c in name for c in "()|?"):
            # A site from an earlier process: any domain of the site will do.
            return message.recipient.rpartition("@")[2].lower()
        return name

    async def _acquire(
        self, pool: _Pool, lease: Lease, message: OutgoingMessage, sts: MtaStsPolicy | None
    ) -> Conn:
        destination = lease.destination
        now = time.monotonic()
        enforce = sts is not None and sts.mode == "enforce"
        i = len(pool.idle)
        while i:
            i -= 1
            conn = pool.idle[i]
            if not conn.client.is_connected or now - conn.last_used >= self._idle_timeout:
                del pool.idle[i]
                pool.open -= 1
                await self._quit(conn)
                i = min(i, len(pool.idle))
                continue
            if enforce and not (conn.verified and sts is not None and sts.matches(conn.host)):
                continue  # opened for a domain without this policy: not for this one
            del pool.idle[i]
            self.stats.connections_reused += 1
            return conn
        pool.open += 1
        self.stats.peak_open[destination] = max(self.stats.peak_open.get(destination, 0), pool.open)
        try:
            return await self._connect(lease, self._lookup_name(destination, message), message, sts)
        except BaseException:
            pool.open -= 1
            self.stats.connect_failures += 1
            raise

    async def _release(self, pool: _Pool, conn: Conn, reusable: bool, lease: Lease) -> None:
        conn.uses += 1
        conn.last_used = time.monotonic()
        if reusable and conn.rejections >= self._max_rejections:
            reusable = False
            self.stats.closed_after_rejections += 1
        keep = (
            reusable
            and not self._closed
            and conn.client.is_connected
            and conn.uses < self._max_uses
            and (pool.open <= 1 or pool.open <= self._limit(lease.destination, lease.source))
        )
        if keep:
            pool.idle.append(conn)
            return
        pool.open -= 1
        await self._quit(conn)

    async def _quit(self, conn: Conn) -> None:
        self.stats.connections_closed += 1
        client = conn.client
        if client.is_connected:
            try:
                await client.quit(timeout=self._command_timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    # -- connect -------------------------------------------------------------------
    def _source(self, name: str) -> tuple[tuple[str, int] | None, str | None]:
        if not name:
            return None, self._local_hostname
        try:
            src = self._sources[name]
        except KeyError:
            raise InvalidInputError(
                f"source {name!r} is not in SmtpSender(sources=...): known: {sorted(self._sources)}"
            ) from None
        return (src.address, 0), src.ehlo or self._local_hostname

    def _tls_policy(self, destination: str) -> TlsPolicy:
        policy = self._tls if isinstance(self._tls, str) else self._tls(destination)
        if policy not in TLS_POLICIES:
            raise InvalidInputError(f"tls policy for {destination}: {policy!r}")
        return policy

    async def _connect(
        self, lease: Lease, lookup_name: str, message: OutgoingMessage, sts: MtaStsPolicy | None
    ) -> Conn:
        source_address, ehlo = self._source(lease.source)
        policy = self._tls_policy(lease.destination)
        try:
            endpoints = list(await self._resolver.resolve(lookup_name))
        except PermanentDnsFailure as exc:
            raise _NoConnection(exc.reply) from exc
        except DnsFailure as exc:
            raise _NoConnection(transport_reply("dns_failure", str(exc))) from exc
        if not endpoints:
            raise _NoConnection(
                transport_reply("dns_failure", f"no mail exchanger for {lookup_name}")
            )
        domain = message.recipient.rpartition("@")[2].lower()
        if sts is not None:
            endpoints = self._sts_endpoints(domain, sts, endpoints)
        outcome: str | Reply = transport_reply("connection_refused")
        for n, endpoint in enumerate(endpoints):  # most preferred first
            if n:
                self.stats.mx_fallbacks += 1
            host = endpoint.server_name or endpoint.host
            try:
                if sts is None:
                    client = await self._open(endpoint, source_address, ehlo, policy)
                else:
                    client = await self._open_sts(endpoint, source_address, ehlo, domain, sts)
            except _NoConnection as failure:
                outcome = failure.outcome
                continue  # the next MX on any connection-level failure
            self.stats.connections_opened += 1
            verified = sts is not None and sts.mode == "enforce"
            return Conn(client, host=host.lower().rstrip("."), verified=verified)
        raise _NoConnection(outcome)

    # -- MTA-STS (mailretry.mtasts) ----------------------------------------------------
    def _sts_refusal(self, domain: str, host: str, why: str, sts: MtaStsPolicy) -> Reply:
        """Count and pass on a refusal under ``sts``; the outcome to report."""
        if sts.mode == "enforce":
            self.stats.mta_sts_refused += 1
        else:
            self.stats.mta_sts_testing += 1
        if self._mta_sts_report is not None:
            self._mta_sts_report(domain, host, why)
        return transport_reply("tls_failure", f"MTA-STS ({sts.mode}) for {domain}: {why}")

    def _sts_endpoints(
        self, domain: str, sts: MtaStsPolicy, endpoints: list[Endpoint]
    ) -> list[Endpoint]:
        """The MX hosts the policy allows (enforce); testing: all, reporting
        the others."""
        allowed: list[Endpoint] = []
        refusal: Reply | None = None
        for e in endpoints:
            host = e.server_name or e.host
            if sts.matches(host):
                allowed.append(e)
            else:
                refusal = self._sts_refusal(domain, host, f"MX {host} is not in the policy", sts)
        if sts.mode != "enforce":
            return endpoints
        if not allowed:
            assert refusal is not None  # endpoints is not empty
            raise _NoConnection(refusal)
        return allowed

    async def _open_sts(
        self,
        endpoint: Endpoint,
        source_address: tuple[str, int] | None,
        ehlo: str | None,
        domain: str,
        sts: MtaStsPolicy,
    ) -> aiosmtplib.SMTP:
        """STARTTLS with a certificate valid for the MX host name. Enforce:
        or fail; testing: or report it and connect opportunistically."""
        host = endpoint.server_name or endpoint.host
        try:
            return await self._open(endpoint, source_address, ehlo, "verify")
        except _NoConnection as failure:
            if not isinstance(failure.outcome, Reply) or failure.outcome.transport != "tls_failure":
                raise  # no TLS question: refused, timed out, a reply
            refusal = self._sts_refusal(domain, host, failure.outcome.text, sts)
            if sts.mode == "enforce":
                raise _NoConnection(refusal) from failure
        return await self._open(endpoint, source_address, ehlo, "opportunistic")

    async def _open(
        self,
        endpoint: Endpoint,
        source_address: tuple[str, int] | None,
        ehlo: str | None,
        policy: TlsPolicy,
    ) -> aiosmtplib.SMTP:
        """A connection to one endpoint, greeted, with TLS as the policy says."""
        hostkey = (endpoint.host, endpoint.port)
        plain_only = policy == "opportunistic" and time.monotonic() < self._plain_until.get(
            hostkey, float("-inf")
        )
        client = await self._greet(endpoint, source_address, ehlo)
        if policy == "none" or plain_only:
            return client
        if not client.supports_extension("starttls"):
            if policy == "opportunistic":
                return client
            client.close()
            raise _NoConnection(
                transport_reply("tls_failure", f"{endpoint.host} does not offer STARTTLS")
            )
        try:
            await client.starttls(
                server_hostname=endpoint.server_name or endpoint.host,
                validate_certs=policy == "verify",
                tls_context=self._tls_context if policy == "verify" else None,
                timeout=self._command_timeout,
            )
            await self._hello(client)
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            if policy != "opportunistic":
                raise _NoConnection(format_reply(exc.code, exc.message)) from exc
            failure: BaseException = exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            client.close()
            if policy != "opportunistic":
                raise _NoConnection(transport_reply("tls_failure", str(exc))) from exc
            failure = exc
        except BaseException:
            client.close()
            raise
        else:
            self.stats.tls_sessions += 1
            return client
        # Opportunistic: the handshake failed, so deliver in plain text (RFC 7435
        # section 3) and do not try TLS with this host for a while.
        del failure
        self.stats.tls_fallbacks += 1
        self._plain_until[hostkey] = time.monotonic() + self._plain_after_tls_failure
        return await self._greet(endpoint, source_address, ehlo)

    async def _greet(
        self,
        endpoint: Endpoint,
        source_address: tuple[str, int] | None,
        ehlo: str | None,
    ) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            local_hostname=ehlo,
            source_address=source_address,
            timeout=self._command_timeout,
            start_tls=False,
        )
        try:
            await client.connect(timeout=self._connect_timeout)
            await self._hello(client)
        except aiosmtplib.SMTPResponseException as exc:
            # The server answered (greeting or EHLO refused).
            client.close()
            raise _NoConnection(format_reply(exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise _NoConnection(_transport_for_connect_error(exc)) from exc
        except BaseException:  # cancelled (attempt timeout, shutdown)
            client.close()
            raise
        return client

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


def _engine_limit(engine: LimitSource) -> Callable[[str, str], int]:
    generation = getattr(engine, "limits_generation", None)
    if generation is None:

        def limit(destination: str, source: str) -> int:
            return engine.concurrency_limit(destination, source or None)

        return limit
    return _CachedLimits(engine, generation)


class _CachedLimits:
    """Concurrency limits read from the engine once per limits generation:
    one cheap call per release instead of a name lookup, while a cut (which
    changes the generation) is seen at the next release as before."""

    def __init__(self, engine: LimitSource, generation: Callable[[], int]) -> None:
        self._engine = engine
        self._generation = generation
        self._seen = -1
        self._limits: dict[tuple[str, str], int] = {}

    def __call__(self, destination: str, source: str) -> int:
        # The generation first: a limit that changes after this read changes
        # it again, so the next call re-reads.
        g = self._generation()
        if g != self._seen:
            self._seen = g
            self._limits.clear()
        key = (destination, source)
        value = self._limits.get(key)
        if value is None:
            value = self._limits[key] = self._engine.concurrency_limit(destination, source or None)
        return value
