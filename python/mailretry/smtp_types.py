"""The pieces :class:`mailretry.smtp.SmtpSender` is built from: the message to
send, source addresses, resolvers, the TLS policy names and reply formatting.
Imported from :mod:`mailretry.smtp` as well."""

from __future__ import annotations

import email.message
import email.policy
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from mailretry._core import Reply
from mailretry.classify import transport_reply
from mailretry.dns import DnsFailure, Endpoint

try:
    import aiosmtplib
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError("mailretry.smtp needs aiosmtplib: pip install 'mailretry[smtp]'") from _err

__all__ = [
    "TLS_POLICIES",
    "ImplicitMxResolver",
    "LimitSource",
    "OutgoingMessage",
    "Resolver",
    "SourceAddress",
    "StaticResolver",
    "TlsPolicy",
    "format_reply",
]


#: What to do about STARTTLS, per destination:
#: ``"none"``: never; ``"opportunistic"`` (default, RFC 7435): when the server
#: offers it, without checking the certificate, and in plain text when the
#: handshake fails; ``"required"``: encrypt or fail (``tls_failure``), any
#: certificate; ``"verify"``: encrypt with a certificate valid for the MX host
#: name (what an MTA-STS ``enforce`` or DANE policy asks for).
TlsPolicy = Literal["none", "opportunistic", "required", "verify"]
TLS_POLICIES: tuple[str, ...] = ("none", "opportunistic", "required", "verify")


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
class SourceAddress:
    """Where connections for a lease's ``source`` leave from: the local
    ``address`` to bind and the ``ehlo`` name to announce (it should match the
    address's PTR record)."""

    address: str
    ehlo: str | None = None


class LimitSource(Protocol):
    """Where a pool's bound comes from: an Engine (durable or not)."""

    def concurrency_limit(self, name: str, source: str | None = None) -> int: ...


class Resolver(Protocol):
    """Maps a destination (domain) to its mail exchangers, most preferred first."""

    async def resolve(self, destination: str) -> Sequence[Endpoint]: ...


class StaticResolver:
    """A fixed table, e.g. ``{"example.com": [Endpoint("127.0.0.1", 2525)]}``.
    An unknown destination is a :class:`DnsFailure`. Its :meth:`site` is the
    destination itself (no rollup)."""

    def __init__(self, table: Mapping[str, Endpoint | Sequence[Endpoint]]) -> None:
        self._table: dict[str, list[Endpoint]] = {}
        for name, value in table.items():
            self._table[name.lower()] = [value] if isinstance(value, Endpoint) else list(value)

    async def resolve(self, destination: str) -> Sequence[Endpoint]:
        try:
            return self._table[destination.lower()]
        except KeyError:
            raise DnsFailure(f"no mail exchanger configured for {destination}") from None

    async def site(self, destination: str) -> str:
        return destination.lower()


class ImplicitMxResolver:
    """Connects to the destination name itself on ``port``, through the
    system's resolver (``getaddrinfo``), without an MX lookup: for a relay
    host or a test server. :class:`~mailretry.dns.MxResolver` does real MX
    resolution. A name that does not resolve is reported at connect time as
    ``dns_failure``."""

    def __init__(self, port: int = 25) -> None:
        self._port = port

    async def resolve(self, destination: str) -> Sequence[Endpoint]:
        return [Endpoint(destination, self._port)]

    async def site(self, destination: str) -> str:
        return destination.lower()


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
