"""One SMTP transaction on an open connection (MAIL, RCPT, DATA, and RSET after
a refusal) for :class:`mailretry.smtp.SmtpSender`, and the connection and
counter records it updates."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from mailretry._core import Reply
from mailretry.classify import transport_reply
from mailretry.smtp_types import OutgoingMessage, format_reply

try:
    import aiosmtplib
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError("mailretry.smtp needs aiosmtplib: pip install 'mailretry[smtp]'") from _err

__all__ = ["Conn", "SenderStats", "transaction"]


@dataclass
class SenderStats:
    """Connection counters of an :class:`SmtpSender`."""

    connections_opened: int = 0
    connections_reused: int = 0
    connections_closed: int = 0
    connect_failures: int = 0
    transactions: int = 0
    tls_sessions: int = 0  #: connections upgraded with STARTTLS
    tls_fallbacks: int = 0  #: opportunistic handshakes that failed: plain text instead
    closed_after_rejections: int = 0  #: dropped after a 421 or rejections in a row
    mx_fallbacks: int = 0  #: a less preferred MX tried after a connection-level failure
    attempt_timeouts: int = 0
    mta_sts_refused: int = 0  #: attempts failed because an enforced MTA-STS policy was not met
    mta_sts_testing: int = 0  #: what a policy in testing mode would have refused (delivered anyway)
    #: most connections open at once per destination
    peak_open: dict[str, int] = field(default_factory=dict)


@dataclass
class Conn:
    """An open connection in a pool."""

    client: aiosmtplib.SMTP
    uses: int = 0
    last_used: float = 0.0
    rejections: int = 0  # replies refusing a transaction, in a row
    host: str = ""  # the MX host name connected to
    verified: bool = False  # STARTTLS with a certificate valid for ``host``


# -- one transaction -----------------------------------------------------------
async def transaction(
    conn: Conn,
    message: OutgoingMessage,
    stats: SenderStats,
    command_timeout: float,
    data_timeout: float,
) -> tuple[str | Reply, bool]:
    """One MAIL/RCPT/DATA transaction on an open connection: the outcome to
    report and whether the connection can be used again."""
    client = conn.client
    stats.transactions += 1
    mail_from, rcpt_to = _envelope(message.sender), _envelope(message.recipient)
    try:
        if mail_from is None or rcpt_to is None:
            # Display names, comments, non-ASCII: aiosmtplib parses and encodes.
            await client.mail(message.sender, options=list(message.mail_options))
            await client.rcpt(message.recipient, options=list(message.rcpt_options))
            response = await client.data(message.data(), timeout=data_timeout)
        else:
            response = await _plain_transaction(
                client, mail_from, rcpt_to, message, command_timeout, data_timeout
            )
    except aiosmtplib.SMTPResponseException as exc:
        text = format_reply(exc.code, exc.message)
        conn.rejections += 1
        if exc.code == 421 or not client.is_connected:
            if exc.code == 421:
                stats.closed_after_rejections += 1
            client.close()
            return text, False
        return text, await _reset(client)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        return transport_reply("connection_dropped", str(exc) or type(exc).__name__), False
    conn.rejections = 0
    return format_reply(response.code, response.message), True


async def _plain_transaction(
    client: aiosmtplib.SMTP,
    mail_from: bytes,
    rcpt_to: bytes,
    message: OutgoingMessage,
    command_timeout: float,
    data_timeout: float,
) -> aiosmtplib.SMTPResponse:
    """MAIL, RCPT and DATA for plain addresses, as ``client.mail``, ``rcpt``
    and ``data`` do it (same commands, same refusals raised) without their
    per-command address parsing and ``wait_for``: one timeout, moved on
    at each step, bounds each reply (``command_timeout``, then
    ``data_timeout`` for the DATA replies). This is most of the sender's
    CPU per message on a reused connection (benchmarks/README.md)."""
    loop = asyncio.get_running_loop()
    mail_opts = [o.encode("ascii") for o in message.mail_options]
    rcpt_opts = [o.encode("ascii") for o in message.rcpt_options]
    try:
        async with asyncio.timeout_at(loop.time() + command_timeout) as step:
            r = await client.execute_command(
                b"MAIL", b"FROM:" + mail_from, *mail_opts, timeout=None
            )
            if r.code != 250:
                raise aiosmtplib.SMTPSenderRefused(r.code, r.message, message.sender)
            step.reschedule(loop.time() + command_timeout)
            r = await client.execute_command(b"RCPT", b"TO:" + rcpt_to, *rcpt_opts, timeout=None)
            if r.code not in (250, 251):
                raise aiosmtplib.SMTPRecipientRefused(r.code, r.message, message.recipient)
            step.reschedule(loop.time() + data_timeout)
            return await client.data(message.data(), timeout=None)
    except TimeoutError as exc:
        # The reply may still come: the connection is out of step, close it.
        client.close()
        raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the server's reply") from exc


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused transaction; False when the connection is unusable."""
    try:
        response = await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
        return False
    return response.code == 250


#: A bare address (``local@domain``, ASCII, nothing to quote or strip): sent as
#: ``<address>`` without aiosmtplib's RFC 5322 parsing.
_BARE_ADDRESS = re.compile(r"[!#-'*+\-/-9=?A-Z^-~.]+@[A-Za-z0-9.\-\[\]:]+", re.ASCII)


def _envelope(address: str) -> bytes | None:
    """``<address>`` for MAIL FROM / RCPT TO, ``<>`` for the null sender, or
    None when aiosmtplib should parse the address."""
    if not address:
        return b"<>"
    if _BARE_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return None
