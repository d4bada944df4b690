"""Mail exchanger resolution for real delivery (RFC 5321 section 5, RFC 7505).

:class:`MxResolver` turns a recipient domain into the addresses to connect to,
most preferred first, with dnspython's asyncio resolver (``pip install
'mailretry[smtp]'``):

* MX records in preference order; hosts of equal preference in a seeded random
  order (RFC 5321 5.1 asks senders to spread load over them);
* no MX record but an address record: the domain itself is the mail exchanger
  (the implicit MX);
* a null MX (one MX record ``0 .``, RFC 7505): the domain accepts no mail, a
  permanent failure with ``556 5.1.10``;
* NXDOMAIN (the domain does not exist), or neither MX nor address: permanent,
  ``550 5.1.2``; SERVFAIL, refused queries and timeouts: transient
  (:class:`DnsFailure`, reported as ``dns_failure``);
* answers cached for their TTL (clamped to ``[min_ttl, max_ttl]``); permanent
  answers for ``negative_ttl``; transient failures are not cached.

**MX rollup.** :meth:`MxResolver.site` names the set of mail exchangers a domain
uses, like KumoMTA's *site name* or Postfix's next hop: every domain hosted at
one provider gets the same site (``(alt1|alt2)?.aspmx.l.example``), so when the
engine's destination is the site they share the provider's limits, suspensions
and health. :meth:`mailretry.smtp.SmtpSender.route` returns it, and
:meth:`mailretry.aio.Driver.submit_to` submits under it.

Times are real seconds (``clock`` defaults to ``time.monotonic``); the DNS
answers in tests come from a fake :class:`Lookup` or a private dnsmasq.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DnsAnswer",
    "DnsFailure",
    "DnspythonLookup",
    "Endpoint",
    "Lookup",
    "MxHost",
    "MxResolver",
    "MxResult",
    "NoData",
    "NxDomain",
    "PermanentDnsFailure",
    "site_name",
]


@dataclass(frozen=True)
class Endpoint:
    """A mail exchanger to connect to: ``host`` is a name or an address;
    ``server_name`` is the MX host name when ``host`` is its address (used for
    TLS and in messages)."""

    host: str
    port: int = 25
    server_name: str | None = None


class DnsFailure(Exception):
    """The destination's mail exchangers cannot be found right now (SERVFAIL,
    timeout, no answer from any server): reported as ``dns_failure``,
    transient."""


class PermanentDnsFailure(DnsFailure):
    """The destination can never be delivered to as it stands: ``reply`` is the
    SMTP reply to report (``556 5.1.10`` null MX, ``550 5.1.2`` no such domain)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class NxDomain(Exception):
    """Raised by a :class:`Lookup`: the name does not exist."""


class NoData(Exception):
    """Raised by a :class:`Lookup`: the name exists but has no record of that type."""


@dataclass(frozen=True)
class DnsAnswer:
    """What a :class:`Lookup` returns: ``records`` as text (``"10 mx.example."``
    for MX, ``"192.0.2.1"`` for A/AAAA) and the TTL in seconds."""

    records: tuple[str, ...]
    ttl: float


class Lookup(Protocol):
    """One DNS query. Raises :class:`NxDomain`, :class:`NoData`, or
    :class:`DnsFailure` for anything transient."""

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer: ...


class DnspythonLookup:
    """:class:`Lookup` on ``dns.asyncresolver`` (dnspython).

    ``nameservers`` and ``port`` select the servers (default: the system's
    ``/etc/resolv.conf``); ``timeout`` bounds each query in real seconds.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 5.0,
    ) -> None:
        try:
            import dns.asyncresolver
        except ImportError as err:  # pragma: no cover - only without the extra
            raise ImportError(
                "MX resolution needs dnspython: pip install 'mailretry[smtp]'"
            ) from err
        if nameservers is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
        self._resolver.port = port
        self._timeout = timeout

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(
                name, rdtype, lifetime=self._timeout, search=False
            )
        except dns.resolver.NXDOMAIN as exc:
            raise NxDomain(str(exc)) from exc
        except dns.resolver.NoAnswer as exc:
            raise NoData(str(exc)) from exc
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsFailure(f"{name} {rdtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{name} {rdtype}: {exc}") from exc
        rrset = answer.rrset
        if rrset is None:  # pragma: no cover - raise_on_no_answer is on
            raise NoData(f"{name} {rdtype}: empty answer")
        return DnsAnswer(tuple(r.to_text() for r in rrset), float(rrset.ttl))


@dataclass(frozen=True)
class MxHost:
    preference: int
    host: str  # lower case, no trailing dot


@dataclass(frozen=True)
class MxResult:
    """A domain's mail exchangers, most preferred first."""

    domain: str
    hosts: tuple[MxHost, ...]
    implicit: bool = False  # no MX record: the domain itself (RFC 5321 5.1)

    @property
    def site(self) -> str:
        return site_name(h.host for h in self.hosts)


def site_name(hosts: object) -> str:
    """A name for a set of MX hosts, the same for every domain that uses that
    set, whatever the order: ``(alt1|alt2)?.aspmx.l.example`` for
    ``aspmx.l.example``, ``alt1.aspmx.l.example`` and ``alt2.aspmx.l.example``
    (KumoMTA's form); one host is its own name; hosts with nothing in common
    are joined with ``|``."""
    names = sorted({str(h).lower().rstrip(".") for h in hosts})  # type: ignore[attr-defined]
    if not names:
        raise ValueError("site_name needs at least one host")
    if len(names) == 1:
        return names[0]
    labels = [n.split(".") for n in names]
    common: list[str] = []
    for parts in zip(*(reversed(x) for x in labels), strict=False):
        if len(set(parts)) != 1:
            break
        common.insert(0, parts[0])
    # A suffix of two labels or more (a shared TLD alone is no provider).
    if len(common) < 2:
        return "|".join(names)
    suffix = ".".join(common)
    prefixes = sorted({".".join(x[: len(x) - len(common)]) for x in labels})
    optional = "" in prefixes
    alternatives = "|".join(p for p in prefixes if p)
    return f"({alternatives}){'?' if optional else ''}.{suffix}"


@dataclass
class _Cached:
    expires: float
    value: MxResult | tuple[str, ...] | PermanentDnsFailure


class MxResolver:
    """Destination domain to :class:`Endpoint` list, with an MX lookup.

    Parameters
    ----------
    nameservers, port, timeout
        For the default :class:`DnspythonLookup` (``nameservers=None``: the
        system's resolvers).
    lookup
        Another :class:`Lookup` (tests).
    smtp_port
        Port of every endpoint (25 on the Internet).
    ipv6
        Also look up AAAA records (tried after the A records of the same host).
    min_ttl, max_ttl, negative_ttl
        Cache bounds in seconds; ``negative_ttl`` applies to permanent failures.
    seed
        Order of hosts with equal preference.
    clock
        Real-time source for the cache (default ``time.monotonic``).
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 5.0,
        lookup: Lookup | None = None,
        smtp_port: int = 25,
        ipv6: bool = False,
        min_ttl: float = 5.0,
        max_ttl: float = 3600.0,
        negative_ttl: float = 300.0,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup: Lookup = lookup or DnspythonLookup(nameservers, port=port, timeout=timeout)
        self._smtp_port = smtp_port
        self._ipv6 = ipv6
        self._min_ttl = min_ttl
        self._max_ttl = max_ttl
        self._negative_ttl = negative_ttl
        self._rng = random.Random(seed)
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}
        self.queries = 0  #: DNS queries sent (cache misses)

    # -- public --------------------------------------------------------------
    async def mx(self, domain: str) -> MxResult:
        """The domain's mail exchangers. Raises :class:`PermanentDnsFailure`
        (null MX, no such domain, no MX and no address) or :class:`DnsFailure`."""
        name = _normalise(domain)
        cached = self._get(name, "MX")
        if cached is not None:
            if isinstance(cached, PermanentDnsFailure):
                raise cached
            assert isinstance(cached, MxResult)
            return cached
        try:
            answer = await self._query(name, "MX")
        except NxDomain:
            raise self._permanent(
                name, "MX", f"550 5.1.2 mailretry: domain {name} does not exist (NXDOMAIN)"
            ) from None
        except NoData:
            return await self._implicit(name)
        hosts = [_parse_mx(r) for r in answer.records]
        if any(h.host == "" for h in hosts):
            if len(hosts) == 1 and hosts[0].preference == 0:
                raise self._permanent(
                    name,
                    "MX",
                    f"556 5.1.10 mailretry: {name} accepts no mail (null MX, RFC 7505)",
                )
            hosts = [h for h in hosts if h.host]  # a "." among real hosts: ignore it
        result = MxResult(name, self._ordered(hosts))
        self._put(name, "MX", result, answer.ttl)
        return result

    async def site(self, domain: str) -> str:
        """The rollup key for ``domain``: :func:`site_name` of its MX set.
        When the MX set is not known (DNS failure of any kind), the domain
        itself, so that the attempt reports the failure for that domain."""
        try:
            return (await self.mx(domain)).site
        except DnsFailure:
            return _normalise(domain)

    async def resolve(self, destination: str) -> Sequence[Endpoint]:
        """Endpoints for a domain, most preferred first (the
        :class:`mailretry.smtp.Resolver` protocol). An MX host whose address
        cannot be found is skipped; when none is left, :class:`DnsFailure` if
        any lookup failed transiently, else :class:`PermanentDnsFailure`."""
        result = await self.mx(destination)
        endpoints: list[Endpoint] = []
        transient: DnsFailure | None = None
        for mx in result.hosts:
            try:
                addresses = await self.addresses(mx.host)
            except PermanentDnsFailure:
                continue
            except DnsFailure as exc:
                transient = exc
                continue
            endpoints.extend(Endpoint(a, self._smtp_port, mx.host) for a in addresses)
        if endpoints:
            return endpoints
        if transient is not None:
            raise transient
        raise PermanentDnsFailure(
            f"550 5.1.2 mailretry: no address for any mail exchanger of {result.domain}"
        )

    async def addresses(self, host: str) -> tuple[str, ...]:
        """A (then AAAA, with ``ipv6``) addresses of a host."""
        name = _normalise(host)
        found: list[str] = []
        exists = False
        for rdtype in ("A", "AAAA") if self._ipv6 else ("A",):
            cached = self._get(name, rdtype)
            if isinstance(cached, tuple):
                found.extend(cached)
                exists = True
                continue
            if isinstance(cached, PermanentDnsFailure):
                continue
            try:
                answer = await self._query(name, rdtype)
            except NxDomain:
                self._permanent(name, rdtype, f"550 5.1.2 mailretry: {name} does not exist")
                break
            except NoData:
                self._put(name, rdtype, (), self._negative_ttl)
                exists = True
                continue
            self._put(name, rdtype, answer.records, answer.ttl)
            found.extend(answer.records)
            exists = True
        if not found:
            raise PermanentDnsFailure(
                f"550 5.1.2 mailretry: {name} has no address"
                if exists
                else f"550 5.1.2 mailretry: {name} does not exist"
            )
        return tuple(found)

    # -- internals -----------------------------------------------------------
    async def _implicit(self, name: str) -> MxResult:
        try:
            await self.addresses(name)
        except PermanentDnsFailure:
            raise self._permanent(
                name, "MX", f"550 5.1.2 mailretry: {name} has no MX and no address record"
            ) from None
        result = MxResult(name, (MxHost(0, name),), implicit=True)
        # No MX is a negative answer: cached like one (RFC 2308).
        self._put(name, "MX", result, self._negative_ttl)
        return result

    async def _query(self, name: str, rdtype: str) -> DnsAnswer:
        self.queries += 1
        return await self._lookup(name, rdtype)

    def _ordered(self, hosts: list[MxHost]) -> tuple[MxHost, ...]:
        shuffled = list(hosts)
        self._rng.shuffle(shuffled)
        shuffled.sort(key=lambda h: h.preference)  # stable: ties keep the shuffle
        return tuple(shuffled)

    def _get(
        self, name: str, rdtype: str
    ) -> MxResult | tuple[str, ...] | PermanentDnsFailure | None:
        entry = self._cache.get((name, rdtype))
        if entry is None:
            return None
        if self._clock() >= entry.expires:
            del self._cache[(name, rdtype)]
            return None
        return entry.value

    def _put(
        self,
        name: str,
        rdtype: str,
        value: MxResult | tuple[str, ...] | PermanentDnsFailure,
        ttl: float,
    ) -> None:
        ttl = min(self._max_ttl, max(self._min_ttl, ttl))
        self._cache[(name, rdtype)] = _Cached(self._clock() + ttl, value)

    def _permanent(self, name: str, rdtype: str, reply: str) -> PermanentDnsFailure:
        failure = PermanentDnsFailure(reply)
        self._put(name, rdtype, failure, self._negative_ttl)
        return failure


def _normalise(name: str) -> str:
    name = name.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or any(c.isspace() or ord(c) < 32 for c in name):
        raise PermanentDnsFailure(f"550 5.1.2 mailretry: bad domain name {name!r}")
    return name


def _parse_mx(text: str) -> MxHost:
    preference, _, host = text.strip().partition(" ")
    host = host.strip().lower()
    return MxHost(int(preference), "" if host in (".", "") else host.rstrip("."))
