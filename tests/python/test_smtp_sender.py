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
    SourceAddress,
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


def self_signed(tmp_path: Path) -> ssl.SSLContext:
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
    return ctx


class Accept:
    def __init__(self) -> None:
        self.tls: list[bool] = []

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.tls.append(session.ssl is not None)
        return "250 ok"


class BrokenStartTls(SMTP):  # type: ignore[misc]
    """Offers STARTTLS, says 220 to it, then drops the connection: a failed
    handshake."""

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("220 2.0.0 Ready to start TLS")
        self.transport.close()


async def tls_server(
    ctx: ssl.SSLContext | None,
    tls: str,
    *,
    broken: bool = False,
    sends: int = 1,
) -> tuple[list[object], list[bool], Any]:
    loop = asyncio.get_running_loop()
    handler = Accept()
    cls = BrokenStartTls if broken else SMTP
    if ctx is None:  # broken: a context is needed for aiosmtpd to offer STARTTLS
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv = await loop.create_server(
        lambda: cls(handler, hostname="localhost", tls_context=ctx, loop=loop),
        "127.0.0.1",
        0,
    )
    port = srv.sockets[0].getsockname()[1]
    try:
        async with sender_for(port, tls=tls) as s:
            outs = [
                await s.send(FakeLease(i), message(i))  # type: ignore[arg-type]
                for i in range(sends)
            ]
            return outs, handler.tls, s.stats
    finally:
        srv.close()
        await srv.wait_closed()


def test_self_signed_starttls_is_used_by_default(tmp_path: Path) -> None:
    ctx = self_signed(tmp_path)
    outs, tls, stats = asyncio.run(tls_server(ctx, "opportunistic"))
    assert outs == ["250 ok"] and tls == [True]
    assert stats.tls_sessions == 1 and stats.tls_fallbacks == 0
    outs, tls, _ = asyncio.run(tls_server(ctx, "required"))
    assert outs == ["250 ok"] and tls == [True]  # required: encrypted, any certificate
    outs, tls, _ = asyncio.run(tls_server(ctx, "none"))
    assert outs == ["250 ok"] and tls == [False]


def test_verify_policy_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    outs, tls, _ = asyncio.run(tls_server(self_signed(tmp_path), "verify"))
    assert kind(outs[0]) == "tls_failure" and tls == []


def test_failed_handshake_falls_back_to_plain_text_unless_required() -> None:
    outs, tls, stats = asyncio.run(tls_server(None, "opportunistic", broken=True, sends=2))
    assert outs == ["250 ok", "250 ok"] and tls == [False, False]
    # Once: the second attempt reuses the plain connection or skips TLS with that host.
    assert stats.tls_fallbacks == 1
    outs, tls, _ = asyncio.run(tls_server(None, "required", broken=True))
    assert kind(outs[0]) == "tls_failure" and tls == []


def test_tls_policy_is_validated() -> None:
    with pytest.raises(mailretry.InvalidInputError):
        SmtpSender(limit=lambda d, s: 1, tls="sometimes")  # type: ignore[arg-type]


def test_connection_is_dropped_after_rejections_in_a_row() -> None:
    async def body(server: SmtpTestServer) -> tuple[list[object], Any]:
        async with sender_for(server.port("x.test"), max_rejections_per_connection=3) as s:
            outs = [
                await s.send(FakeLease(i), message(i, "nobody"))  # type: ignore[arg-type]
                for i in range(7)
            ]
            return outs, s.stats

    outs, stats = asyncio.run(with_server(Limits(unknown_users=frozenset({"nobody"})), body))
    assert all(isinstance(o, str) and o.startswith("550 5.1.1") for o in outs)
    # 7 refusals, 3 per connection: connections for 1-3, 4-6, 7.
    assert stats.connections_opened == 3
    assert stats.closed_after_rejections == 2


def test_success_resets_the_rejection_count() -> None:
    async def body(server: SmtpTestServer) -> Any:
        async with sender_for(server.port("x.test"), max_rejections_per_connection=2) as s:
            for i in range(6):
                local = "user" if i % 2 else "nobody"  # refused, accepted, refused, ...
                await s.send(FakeLease(i), message(i, local))  # type: ignore[arg-type]
            return s.stats

    stats = asyncio.run(with_server(Limits(unknown_users=frozenset({"nobody"})), body))
    assert stats.connections_opened == 1 and stats.closed_after_rejections == 0


def test_source_binds_the_local_address_and_ehlo_name() -> None:
    seen: list[tuple[str, str]] = []

    class Record:
        async def handle_EHLO(
            self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            seen.append((session.peer[0], hostname))
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
            return "250 ok"

    async def go() -> list[object]:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: SMTP(Record(), hostname="localhost", loop=loop), "127.0.0.1", 0
        )
        port = srv.sockets[0].getsockname()[1]
        sources = {
            "ip2": SourceAddress("127.0.0.2", "out2.mailretry.test"),
            "ip3": SourceAddress("127.0.0.3"),
        }
        try:
            async with sender_for(port, sources=sources) as s:
                outs: list[object] = []
                for n, src in enumerate(["ip2", "ip3", "", "nope"]):
                    lease = FakeLease(n)
                    lease.source = src
                    try:
                        outs.append(await s.send(lease, message(n)))  # type: ignore[arg-type]
                    except mailretry.InvalidInputError as exc:
                        outs.append(exc)
                return outs
        finally:
            srv.close()
            await srv.wait_closed()

    outs = asyncio.run(go())
    assert outs[:3] == ["250 ok", "250 ok", "250 ok"]
    assert isinstance(outs[3], mailretry.InvalidInputError) and "nope" in str(outs[3])
    assert seen == [
        ("127.0.0.2", "out2.mailretry.test"),
        ("127.0.0.3", "client.mailretry.test"),
        ("127.0.0.1", "client.mailretry.test"),
    ]


def test_attempt_timeout_bounds_the_whole_attempt() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 slow ESMTP\r\n")
            await writer.drain()
            await reader.readline()  # EHLO: never answered
            await reader.read()  # until the client gives up
        finally:
            writer.close()

    async def go() -> tuple[object, Any]:
        srv = await raw_server(handler)
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(port, attempt_timeout=0.2, command_timeout=30) as s:
                out = await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
                return out, s.stats
        finally:
            srv.close()

    out, stats = asyncio.run(go())
    assert kind(out) == "connection_dropped" and stats.attempt_timeouts == 1


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


def scripted_server(
    answers: dict[bytes, bytes], seen: list[bytes]
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """A server answering each command by its verb from ``answers``; a verb
    without an answer is never answered. Records every line it reads."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 scripted ESMTP\r\n")
            await writer.drain()
            in_data = False
            while line := await reader.readline():
                seen.append(line)
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        if b"." not in answers:
                            await reader.read()  # silent until the client gives up
                            return
                        writer.write(answers[b"."])
                    continue
                verb = line.split(b" ")[0].split(b":")[0].strip().upper()
                if verb not in answers:
                    await reader.read()  # silent until the client gives up
                    return
                writer.write(answers[verb])
                in_data = verb == b"DATA"
                await writer.drain()
        finally:
            writer.close()

    return handler


ANSWERS = {
    b"EHLO": b"250-scripted\r\n250 8BITMIME\r\n",
    b"MAIL": b"250 2.1.0 ok\r\n",
    b"RCPT": b"250 2.1.5 ok\r\n",
    b"DATA": b"354 go on\r\n",
    b".": b"250 2.0.0 queued\r\n",
    b"RSET": b"250 ok\r\n",
    b"QUIT": b"221 bye\r\n",
}


@pytest.mark.parametrize("silent", [b"RCPT", b"."])
def test_an_unanswered_command_is_a_dropped_connection_after_its_timeout(silent: bytes) -> None:
    """command_timeout bounds RCPT's reply, data_timeout the reply to the data;
    the connection is closed (its late reply would answer the next command)."""
    seen: list[bytes] = []
    answers = {k: v for k, v in ANSWERS.items() if k != silent}

    async def go() -> tuple[object, Any, int]:
        srv = await raw_server(scripted_server(answers, seen))
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(
                port, command_timeout=0.3 if silent == b"RCPT" else 30, data_timeout=0.3
            ) as s:
                out = await s.send(FakeLease(1), message(1))  # type: ignore[arg-type]
                return out, s.stats, s.open_connections("x.test")
        finally:
            srv.close()

    out, stats, still_open = asyncio.run(go())
    assert kind(out) == "connection_dropped" and "timed out" in str(out)
    assert stats.attempt_timeouts == 0 and still_open == 0


@pytest.mark.parametrize(
    ("sender", "recipient", "mail_from", "rcpt_to"),
    [
        ("s@mailretry.test", "u@x.test", b"MAIL FROM:<s@mailretry.test>", b"RCPT TO:<u@x.test>"),
        ("", "u@x.test", b"MAIL FROM:<>", b"RCPT TO:<u@x.test>"),
        # not bare: aiosmtplib parses the address (display name dropped)
        ("Bounce <b@mailretry.test>", "u@x.test", b"MAIL FROM:<b@mailretry.test>", None),
    ],
)
def test_envelope_addresses_on_the_wire(
    sender: str, recipient: str, mail_from: bytes, rcpt_to: bytes | None
) -> None:
    seen: list[bytes] = []

    async def go() -> object:
        srv = await raw_server(scripted_server(ANSWERS, seen))
        port = srv.sockets[0].getsockname()[1]
        try:
            async with sender_for(port) as s:
                msg = OutgoingMessage(sender, recipient, b"Subject: t\r\n\r\nhi\r\n")
                return await s.send(FakeLease(1), msg)  # type: ignore[arg-type]
        finally:
            srv.close()

    out = asyncio.run(go())
    assert out == "250 2.0.0 queued"
    assert mail_from + b"\r\n" in seen
    assert (rcpt_to or b"RCPT TO:<u@x.test>") + b"\r\n" in seen
    assert b"hi\r\n" in seen


def test_pool_reads_the_engine_limit_once_per_generation() -> None:
    engine = mailretry.Engine({"destination_defaults": {"initial_concurrency": 3}})
    asked: list[str] = []

    class Counting:
        """The engine, counting the pool's limit lookups."""

        def concurrency_limit(self, name: str, source: str | None = None) -> int:
            asked.append(name)
            return engine.concurrency_limit(name, source)

        def limits_generation(self) -> int:
            return engine.limits_generation()

    for i in range(10):
        engine.submit(i, "x.test", 1_700_000_000.0)
    leases = engine.take_ready(1_700_000_000.0, 10)
    assert len(leases) == 3

    async def body(server: SmtpTestServer) -> list[int]:
        s = SmtpSender(
            Counting(),
            StaticResolver({"x.test": Endpoint("127.0.0.1", server.port("x.test"))}),
            local_hostname="client.mailretry.test",
        )
        async with s:
            outs = await asyncio.gather(*(s.send(x, message(x.msg_id)) for x in leases))
            assert all(o.startswith("250") for o in outs if isinstance(o, str))
            open_after = [s.open_connections("x.test")]
            # Three releases, one lookup: the generation did not change.
            assert len(asked) == 1
            # A connection cap's 421 cuts the destination to one connection.
            engine.report(leases[0], 1_700_000_001.0, "421 4.7.0 Too many concurrent connections")
            assert engine.concurrency_limit("x.test") == 1
            await asyncio.gather(
                *(s.send(FakeLease(i), message(i)) for i in range(10, 13))  # type: ignore[arg-type]
            )
            open_after.append(s.open_connections("x.test"))
            return open_after

    open_after = asyncio.run(with_server(Limits(), body))
    # The cut was seen at the next release although the limit was cached.
    assert open_after == [3, 1]
    assert len(asked) == 2
