"""SmtpSender: what each kind of SMTP outcome is reported as, and its pools."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

from aiosmtpd.smtp import SMTP

import mailretry
from mailretry.smtp import (
    Endpoint,
    OutgoingMessage,
    SmtpSender,
    StaticResolver,
    format_reply,
)
from smtp_server import Limits, SmtpTestServer


class FakeLease:
    def __init__(self, msg_id: int, destination: str = "x.test") -> None:
        self.msg_id = msg_id
        self.destination = destination
        self.source = ""
        self.attempt = 1


def message(msg_id: int, local: str = "user") -> OutgoingMessage:
    content = f"Subject: t\r\nX-Mailretry-Id: {msg_id}\r\n\r\nhello\r\n"
    return OutgoingMessage("s@mailretry.test", f"{local}@x.test", content)


def sender_for(port: int, limit: int = 5, **kwargs: Any) -> SmtpSender:
    return SmtpSender(
        resolver=StaticResolver({"x.test": Endpoint("127.0.0.1", port)}),
        limit=lambda d, s: limit,
        local_hostname="client.mailretry.test",
        **kwargs,
    )


async def with_server(limits: Limits, body: Callable[[SmtpTestServer], Awaitable[Any]]) -> Any:
    server = SmtpTestServer()
    server.add_destination("x.test", limits)
    await server.start()
    try:
        return await body(server)
    finally:
        await server.stop()


def kind(outcome: object) -> str:
    assert isinstance(outcome, mailretry.Reply), outcome
    return outcome.transport


def test_replies_are_reported_verbatim_with_codes() -> None:
    async def body(server: SmtpTestServer) -> list[Any]:
        async with sender_for(server.port("x.test")) as s:
            ok = await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
            bad = await s.send(FakeLease(2), message(2, "nobody"))  # type: ignore[arg-type]
            again = await s.send(FakeLease(3), message(3))  # type: ignore[arg-type]
            return [ok, bad, again, s.stats]

    ok, bad, again, stats = asyncio.run(
        with_server(Limits(unknown_users=frozenset({"nobody"})), body)
    )
    assert ok == "250 2.0.0 Ok: queued as 1"
    assert bad == "550 5.1.1 <nobody@x.test>: Recipient address rejected: User unknown"
    assert mailretry.classify(bad).category == "mailbox_unknown"
    assert again == "250 2.0.0 Ok: queued as 3"
    # One connection, reused after the refused recipient (RSET).
    assert (stats.connections_opened, stats.connections_reused) == (1, 2)


def test_greeting_421_is_the_reply_text() -> None:
    async def body(server: SmtpTestServer) -> list[Any]:
        async with sender_for(server.port("x.test")) as s:
            return [await s.send(FakeLease(1), message(1))]  # type: ignore[arg-type]

    [out] = asyncio.run(with_server(Limits(max_connections=0), body))
    assert isinstance(out, str) and out.startswith("421 4.7.0 Too many connections")
    assert mailretry.classify(out).category == "too_many_connections"


def test_format_reply_keeps_multiline_replies() -> None:
    text = format_reply(550, "5.7.1 first line\n5.7.1 second line")
    assert text == "550-5.7.1 first line\r\n550 5.7.1 second line"
    reply = mailretry.parse_reply(text)
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert reply.text == "first line\nsecond line"


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now

    async def go() -> object:
        async with sender_for(port) as s:
            return await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]

    assert kind(asyncio.run(go())) == "connection_refused"


async def raw_server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> Any:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


def test_no_greeting_is_a_connect_timeout() -> None:
    async def go() -> object:
        async def silent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await r.read()  # never greets
            finally:
                w.close()

        srv = await raw_server(silent)
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(port, connect_timeout=0.3) as s:
                return await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
        finally:
            srv.close()
            await srv.wait_closed()

    assert kind(asyncio.run(go())) == "connect_timeout"


def test_connection_lost_mid_transaction_is_dropped() -> None:
    async def go() -> object:
        async def rude(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                w.write(b"220 rude.test ESMTP\r\n")
                while line := await r.readline():
                    if line.upper().startswith(b"EHLO"):
                        w.write(b"250 rude.test\r\n")
                    elif line.upper().startswith(b"MAIL"):
                        break  # hang up instead of answering
            finally:
                w.close()

        srv = await raw_server(rude)
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(port) as s:
                return await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
        finally:
            srv.close()
            await srv.wait_closed()

    assert kind(asyncio.run(go())) == "connection_dropped"


def test_unresolvable_destination_is_a_dns_failure() -> None:
    async def go() -> object:
        s = SmtpSender(resolver=StaticResolver({}), limit=lambda d, s: 1)
        return await s.send(FakeLease(1, "nowhere.test"), message(1))  # type: ignore[arg-type]

    out = asyncio.run(go())
    assert kind(out) == "dns_failure"
    assert isinstance(out, mailretry.Reply) and "nowhere.test" in out.text


def test_untrusted_certificate_is_a_tls_failure(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    class Accept:
        async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
            return "250 ok"

    async def go() -> object:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: SMTP(Accept(), hostname="localhost", tls_context=ctx, loop=loop),
            "127.0.0.1",
            0,
        )
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(port, start_tls=True) as s:  # verifies the certificate
                return await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
        finally:
            srv.close()
            await srv.wait_closed()

    assert kind(asyncio.run(go())) == "tls_failure"


def test_pool_is_bounded_by_the_current_limit() -> None:
    limit = {"n": 3}

    async def body(server: SmtpTestServer) -> tuple[list[int], Any]:
        s = SmtpSender(
            resolver=StaticResolver({"x.test": Endpoint("127.0.0.1", server.port("x.test"))}),
            limit=lambda d, src: limit["n"],
            local_hostname="client.mailretry.test",
        )
        async with s:
            outs = await asyncio.gather(
                *(s.send(FakeLease(i), message(i)) for i in range(3))  # type: ignore[arg-type]
            )
            assert all(o.startswith("250") for o in outs if isinstance(o, str))
            open_after = [s.open_connections("x.test")]
            limit["n"] = 1  # the engine cut the destination to one connection
            await asyncio.gather(
                *(s.send(FakeLease(i), message(i)) for i in range(3, 6))  # type: ignore[arg-type]
            )
            open_after.append(s.open_connections("x.test"))
            await s.send(FakeLease(6), message(6))  # type: ignore[arg-type]
            open_after.append(s.open_connections("x.test"))
            return open_after, s.stats

    open_after, stats = asyncio.run(with_server(Limits(), body))
    assert open_after == [3, 1, 1]
    assert stats.peak_open["x.test"] == 3
    assert stats.connections_opened == 3  # the second round reused the idle ones
