"""MTA-STS (RFC 8461): a recipient domain's published demand for verified TLS.

A domain that publishes MTA-STS has a DNS TXT record at ``_mta-sts.<domain>``
(``v=STSv1; id=<policy id>``) and a policy file at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``::

    version: STSv1
    mode: enforce
    mx: mail.example.net
    mx: *.example.net
    max_age: 604800

:class:`MtaSts` discovers, fetches and caches these policies;
:class:`mailretry.smtp.SmtpSender` (``mta_sts=MtaSts()``) applies them to each
attempt:

* ``enforce``: only MX hosts matching an ``mx`` pattern are used (the others are
  skipped), and only over STARTTLS with a certificate that is valid for the MX
  host name; otherwise the attempt fails with ``tls_failure`` (transient: the
  message waits for the domain to fix its servers or its policy);
* ``testing``: delivery goes on as without a policy (opportunistic TLS), and
  what ``enforce`` would have refused is counted and passed to a callback
  (``SmtpSender(mta_sts_report=...)``), for the sender's own reporting;
* ``none`` (or no policy): opportunistic TLS as usual.

The policy belongs to the **recipient domain**, not to the engine's destination:
with MX rollup many domains share one site, and each is checked against its own
policy (a reused connection is only used for a domain whose policy it
satisfies).

Caching (RFC 8461 section 5): a fetched policy is kept for its ``max_age``. Each
lookup reads the TXT record; the policy is fetched again only when the record's
``id`` differs from the cached policy's. When the TXT record is missing or the
lookup or the fetch fails, a cached policy that has not expired is still used;
without one the domain has no policy. Times are passed through ``clock``
(epoch seconds, default ``time.time``), so tests control them.

The TXT lookup uses :class:`mailretry.dns.DnspythonLookup`; the HTTPS fetch goes
through a :class:`PolicyFetcher` (default :class:`HttpsPolicyFetcher`, stdlib
``http.client`` in a thread, certificate verified, no redirects). Tests inject
both.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from mailretry.dns import DnsFailure, Lookup, NoData, NxDomain
from mailretry.errors import InvalidInputError

__all__ = [
    "MTA_STS_MODES",
    "HttpsPolicyFetcher",
    "MtaSts",
    "MtaStsMode",
    "MtaStsPolicy",
    "PolicyFetchError",
    "PolicyFetcher",
    "parse_policy",
    "parse_txt_record",
]

log = logging.getLogger(__name__)

MtaStsMode = Literal["enforce", "testing", "none"]
MTA_STS_MODES: tuple[str, ...] = ("enforce", "testing", "none")

#: RFC 8461 section 3.2: max_age is at most 31557600 seconds (one year).
MAX_AGE_LIMIT = 31_557_600
#: Policy bodies larger than this are refused (RFC 8461 section 3.3 suggests 64 KiB).
MAX_POLICY_BYTES = 64 * 1024

_ID = re.compile(r"[A-Za-z0-9]{1,32}")


@dataclass(frozen=True)
class MtaStsPolicy:
    """A parsed policy file: ``mode``, the ``mx`` host patterns (lower case,
    ``*.`` wildcards allowed in the leftmost label), ``max_age`` in seconds
    and the ``id`` of the TXT record it was fetched under."""

    mode: MtaStsMode
    mx: tuple[str, ...]
    max_age: int
    id: str = ""

    def matches(self, host: str) -> bool:
        """Whether an MX host name is allowed (RFC 8461 section 4.1): an exact
        match, or ``*.suffix`` matching exactly one more label on the left."""
        name = host.strip().lower().rstrip(".")
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, _, rest = name.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif name == pattern:
                return True
        return False


def parse_txt_record(texts: tuple[str, ...] | list[str]) -> str | None:
    """The policy ``id`` from the TXT strings at ``_mta-sts.<domain>``, or None
    when there is no usable record (none, several ``v=STSv1`` records, or a
    malformed one: RFC 8461 section 3.1 says to treat those as no policy)."""
    records = [t.strip().strip('"').replace('" "', "") for t in texts]
    sts = [r for r in records if r.startswith("v=STSv1")]
    if len(sts) != 1:
        return None
    fields: dict[str, str] = {}
    for part in sts[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    ident = fields.get("id", "")
    return ident if _ID.fullmatch(ident) else None


def parse_policy(text: str, policy_id: str = "") -> MtaStsPolicy:
    """Parse a policy file (RFC 8461 section 3.2). Unknown keys are ignored;
    a missing or bad ``version``, ``mode`` or ``max_age``, or no ``mx`` in a
    mode other than ``none``, is :class:`~mailretry.errors.InvalidInputError`."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InvalidInputError(f"MTA-STS policy line without a key: {line[:80]!r}")
        key, value = key.strip().lower(), value.strip()
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        elif key not in fields:
            fields[key] = value
    if fields.get("version") != "STSv1":
        raise InvalidInputError(f"MTA-STS policy version {fields.get('version')!r}, not STSv1")
    mode = fields.get("mode")
    if mode not in MTA_STS_MODES:
        raise InvalidInputError(f"MTA-STS policy mode {mode!r}, not one of {MTA_STS_MODES}")
    age = fields.get("max_age", "")
    if not age.isdigit() or int(age) > MAX_AGE_LIMIT:
        raise InvalidInputError(f"MTA-STS policy max_age {age!r}: 0 to {MAX_AGE_LIMIT} seconds")
    if mode != "none" and not mx:
        raise InvalidInputError(f"MTA-STS policy in mode {mode} lists no mx")
    for pattern in mx:
        body = pattern[2:] if pattern.startswith("*.") else pattern
        if not body or "*" in body:
            raise InvalidInputError(f"MTA-STS policy mx pattern {pattern!r}")
    return MtaStsPolicy(mode, tuple(mx), int(age), policy_id)  # type: ignore[arg-type]


class PolicyFetchError(Exception):
    """The policy file could not be fetched (network, TLS, HTTP status, size,
    content type): the domain is treated as having no new policy."""


class PolicyFetcher(Protocol):
    """Fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt``; returns
    the body as text or raises :class:`PolicyFetchError`."""

    async def fetch(self, domain: str) -> str: ...


class HttpsPolicyFetcher:
    """:class:`PolicyFetcher` over HTTPS with the standard library (run in a
    thread): the certificate must be valid for ``mta-sts.<domain>``
    (``context``: default the system's CA bundle), redirects are not followed
    (RFC 8461 section 3.3), the status must be 200, the type ``text/plain``,
    and the body at most :data:`MAX_POLICY_BYTES`. ``port`` and ``connect_to``
    (host to connect to instead of ``mta-sts.<domain>``, the certificate is
    still checked against that name) are for tests on loopback."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        context: ssl.SSLContext | None = None,
        port: int = 443,
        connect_to: str | None = None,
    ) -> None:
        self._timeout = timeout
        self._context = context
        self._port = port
        self._connect_to = connect_to

    async def fetch(self, domain: str) -> str:
        return await asyncio.to_thread(self._fetch, domain)

    def _fetch(self, domain: str) -> str:
        name = f"mta-sts.{domain}"
        context = self._context or ssl.create_default_context()
        try:
            conn = _PinnedHttps(
                name, self._connect_to, self._port, timeout=self._timeout, context=context
            )
            try:
                conn.request("GET", "/.well-known/mta-sts.txt", headers={"Host": name})
                response = conn.getresponse()
                try:
                    if response.status != 200:
                        raise PolicyFetchError(
                            f"{name}: HTTP {response.status} (redirects are not followed)"
                        )
                    ctype = response.getheader("Content-Type") or ""
                    ctype = ctype.split(";")[0].strip().lower()
                    if ctype != "text/plain":
                        raise PolicyFetchError(f"{name}: content type {ctype!r}, not text/plain")
                    body = response.read(MAX_POLICY_BYTES + 1)
                finally:
                    response.close()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise PolicyFetchError(f"{name}: {exc}") from exc
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyFetchError(f"{name}: policy larger than {MAX_POLICY_BYTES} bytes")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyFetchError(f"{name}: policy is not UTF-8") from exc


class _PinnedHttps(http.client.HTTPSConnection):
    """HTTPS to ``name`` (SNI and certificate check), optionally through
    another address (``connect_to``)."""

    def __init__(
        self,
        name: str,
        connect_to: str | None,
        port: int,
        *,
        timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(connect_to or name, port, timeout=timeout, context=context)
        self._name = name
        self._ctx = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._name)


@dataclass
class _Entry:
    policy: MtaStsPolicy
    expires: float  # epoch seconds


class MtaSts:
    """Discovers, fetches and caches MTA-STS policies.

    Parameters
    ----------
    lookup
        TXT queries (default :class:`mailretry.dns.DnspythonLookup`).
    fetcher
        Policy files (default :class:`HttpsPolicyFetcher`).
    clock
        Epoch seconds for ``max_age`` (default ``time.time``).
    """

    def __init__(
        self,
        lookup: Lookup | None = None,
        fetcher: PolicyFetcher | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if lookup is None:
            from mailretry.dns import DnspythonLookup

            lookup = DnspythonLookup()
        self._lookup = lookup
        self._fetcher: PolicyFetcher = fetcher or HttpsPolicyFetcher()
        self._clock = clock or time.time
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[MtaStsPolicy | None]] = {}
        self.fetches = 0  #: policy files fetched (successfully or not)
        self.fetch_failures = 0

    def cached(self, domain: str) -> MtaStsPolicy | None:
        """The cached, unexpired policy of a domain, without any lookup."""
        entry = self._cache.get(_domain(domain))
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.policy

    async def policy(self, domain: str) -> MtaStsPolicy | None:
        """The domain's policy now (None: no policy). Concurrent calls for one
        domain share one lookup."""
        name = _domain(domain)
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.ensure_future(self._discover(name))
            self._inflight[name] = task
            task.add_done_callback(lambda _t: self._inflight.pop(name, None))
        return await asyncio.shield(task)

    async def _discover(self, name: str) -> MtaStsPolicy | None:
        cached = self.cached(name)
        try:
            answer = await self._lookup(f"_mta-sts.{name}", "TXT")
        except (NxDomain, NoData):
            return cached  # no record: a cached policy stays in force until it expires
        except DnsFailure as exc:
            log.info("MTA-STS TXT lookup for %s failed: %s", name, exc)
            return cached
        ident = parse_txt_record(answer.records)
        if ident is None:
            return cached
        if cached is not None and cached.id == ident:
            return cached
        self.fetches += 1
        try:
            policy = parse_policy(await self._fetcher.fetch(name), ident)
        except (PolicyFetchError, InvalidInputError) as exc:
            self.fetch_failures += 1
            log.info("MTA-STS policy for %s not usable: %s", name, exc)
            return cached
        self._cache[name] = _Entry(policy, self._clock() + policy.max_age)
        return policy


def _domain(domain: str) -> str:
    return domain.strip().lower().rstrip(".")
