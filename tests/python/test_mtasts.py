"""MTA-STS (mailretry.mtasts): policy parsing, discovery and caching, the HTTPS
fetch on loopback, and SmtpSender enforcing or testing a recipient domain's
policy. No test reaches the Internet: DNS answers come from a fake lookup,
policies from an injected fetcher or a private HTTPS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiosmtpd")
pytest.importorskip("aiosmtplib")

from aiosmtpd.smtp import SMTP

import mailretry
from mailretry.dns import DnsAnswer, DnsFailure, NxDomain
from mailretry.errors import InvalidInputError
from mailretry.mtasts import (
    HttpsPolicyFetcher,
    MtaSts,
    MtaStsPolicy,
    PolicyFetchError,
    parse_policy,
    parse_txt_record,
)
from mailretry.smtp import Endpoint, OutgoingMessage, SmtpSender, StaticResolver

ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmx: *.backup.test\nmax_age: 86400\n"


# -- parsing ---------------------------------------------------------------------
def test_policy_is_parsed_and_mx_patterns_match_one_label() -> None:
    p = parse_policy(ENFORCE.replace("\n", "\r\n"), "id1")
    assert p == MtaStsPolicy("enforce", ("mx.example.test", "*.backup.test"), 86400, "id1")
    assert p.matches("MX.Example.Test.")
    assert p.matches("a.backup.test")
    assert not p.matches("backup.test")  # the wildcard needs one label
    assert not p.matches("a.b.backup.test")  # and only one
    assert not p.matches("mx.example.test.evil")


@pytest.mark.parametrize(
    "text",
    [
        "mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
        "version: STSv1\nmode: enforce\nmax_age: 10\n",  # no mx
        "version: STSv1\nmode: enforce\nmx: a.*.test\nmax_age: 10\n",
        "version: STSv1\nmode enforce\n",
    ],
)
def test_bad_policies_are_typed_errors(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_policy(text)


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").mode == "none"


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=STSv1; id=20261129T1;"], "20261129T1"),
        (['"v=STSv1; id=abc"'], "abc"),
        (["v=spf1 -all", "v=STSv1; id=x1"], "x1"),
        (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two records: no policy
        (["v=STSv1;"], None),
        (["v=STSv1; id=has-dash"], None),
        ([], None),
    ],
)
def test_txt_record(records: list[str], expected: str | None) -> None:
    assert parse_txt_record(records) == expected


# -- discovery and cache -------------------------------------------------------------
class FakeDns:
    def __init__(self) -> None:
        self.txt: dict[str, list[str] | Exception] = {}
        self.queries: list[str] = []

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer:
        assert rdtype == "TXT"
        self.queries.append(name)
        value = self.txt.get(name, NxDomain(name))
        if isinstance(value, Exception):
            raise value
        return DnsAnswer(tuple(value), 300.0)


class FakeFetcher:
    def __init__(self) -> None:
        self.bodies: dict[str, str | Exception] = {}
        self.fetched: list[str] = []
        self.gate: asyncio.Event | None = None

    async def fetch(self, domain: str) -> str:
        self.fetched.append(domain)
        if self.gate is not None:
            await self.gate.wait()
        body = self.bodies.get(domain, PolicyFetchError("404"))
        if isinstance(body, Exception):
            raise body
        return body


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def sts_with(
    txt: dict[str, list[str] | Exception], bodies: dict[str, str | Exception]
) -> tuple[MtaSts, FakeDns, FakeFetcher, Clock]:
    dns, fetcher, clock = FakeDns(), FakeFetcher(), Clock()
    dns.txt.update(txt)
    fetcher.bodies.update(bodies)
    return MtaSts(dns, fetcher, clock=clock), dns, fetcher, clock


def test_policy_is_cached_by_id_and_max_age() -> None:
    sts, dns, fetcher, clock = sts_with(
        {"_mta-sts.example.test": ["v=STSv1; id=one"]}, {"example.test": ENFORCE}
    )

    async def go() -> list[Any]:
        seen: list[Any] = []
        p = await sts.policy("Example.Test.")
        seen.append((p and p.id, len(fetcher.fetched)))
        clock.t += 3600
        p = await sts.policy("example.test")  # same id: no fetch
        seen.append((p and p.id, len(fetcher.fetched)))
        dns.txt["_mta-sts.example.test"] = ["v=STSv1; id=two"]
        fetcher.bodies["example.test"] = ENFORCE.replace("enforce", "testing")
        p = await sts.policy("example.test")  # new id: fetched again
        seen.append((p and p.id, p and p.mode, len(fetcher.fetched)))
        del dns.txt["_mta-sts.example.test"]
        clock.t += 80000
        p = await sts.policy("example.test")  # record gone: the cached policy holds
        seen.append((p and p.id, len(fetcher.fetched)))
        clock.t += 10000  # past max_age of the policy fetched under id two
        seen.append(await sts.policy("example.test"))
        return seen

    assert asyncio.run(go()) == [
        ("one", 1),
        ("one", 1),
        ("two", "testing", 2),
        ("two", 2),
        None,
    ]


def test_failures_keep_a_cached_policy_and_give_none_without_one() -> None:
    sts, dns, fetcher, _clock = sts_with(
        {"_mta-sts.a.test": ["v=STSv1; id=1"], "_mta-sts.b.test": ["v=STSv1; id=1"]},
        {"a.test": ENFORCE, "b.test": "version: STSv1\nmode: bogus\n"},
    )

    async def go() -> list[Any]:
        out: list[Any] = [await sts.policy("a.test")]
        dns.txt["_mta-sts.a.test"] = DnsFailure("SERVFAIL")
        out.append(await sts.policy("a.test"))
        dns.txt["_mta-sts.a.test"] = ["v=STSv1; id=2"]
        fetcher.bodies["a.test"] = PolicyFetchError("connection refused")
        out.append(await sts.policy("a.test"))
        out.append(await sts.policy("b.test"))  # unparsable policy, nothing cached
        out.append(await sts.policy("c.test"))  # no record at all
        return out

    a, after_servfail, after_fetch_failure, b, c = asyncio.run(go())
    assert a is not None and a.mode == "enforce"
    assert after_servfail == a and after_fetch_failure == a
    assert b is None and c is None
    assert sts.fetch_failures == 2 and fetcher.fetched == ["a.test", "a.test", "b.test"]


def test_concurrent_lookups_share_one_fetch() -> None:
    sts, _dns, fetcher, _clock = sts_with(
        {"_mta-sts.a.test": ["v=STSv1; id=1"]}, {"a.test": ENFORCE}
    )

    async def go() -> list[MtaStsPolicy | None]:
        fetcher.gate = asyncio.Event()
        tasks = [asyncio.ensure_future(sts.policy("a.test")) for _ in range(5)]
        await asyncio.sleep(0)
        fetcher.gate.set()
        return list(await asyncio.gather(*tasks))

    results = asyncio.run(go())
    assert len(fetcher.fetched) == 1 and all(r is results[0] for r in results)


# -- certificates ------------------------------------------------------------------
def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA and leaf certificates for the names the tests use."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
    )  # fmt: skip
    out = {"ca": d / "ca.pem"}
    for name in ("mx.example.test", "mta-sts.example.test"):
        (d / "ext").write_text(f"subjectAltName=DNS:{name}\n")
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
            "-extfile", str(d / "ext"), "-out", str(d / f"{name}.pem"),
        )  # fmt: skip
        out[name] = d / f"{name}.pem"
        out[name + ".key"] = d / f"{name}.key"
    return out


def server_context(pki: dict[str, Path], name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki[name], pki[name + ".key"])
    return ctx


def trusting(pki: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki["ca"]))


# -- HTTPS fetch on loopback -----------------------------------------------------------
@pytest.fixture
def https_server(pki: dict[str, Path]) -> Iterator[tuple[int, dict[str, Any]]]:
    routes: dict[str, Any] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, ctype, body = routes.get(self.path, (404, "text/plain", b""))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if status in (301, 302):
                self.send_header("Location", "https://elsewhere.test/policy")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ctx = server_context(pki, "mta-sts.example.test")

    class TlsServer(http.server.ThreadingHTTPServer):
        def finish_request(self, request: Any, client_address: Any) -> None:
            # TLS per connection, so that a refused handshake closes its socket.
            try:
                tls = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            try:
                Handler(tls, client_address, self)
            finally:
                tls.close()

    srv = TlsServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], routes
    finally:
        srv.shutdown()
        srv.server_close()


WELL_KNOWN = "/.well-known/mta-sts.txt"


def test_https_fetcher_reads_the_policy_and_refuses_redirects_and_types(
    pki: dict[str, Path], https_server: tuple[int, dict[str, Any]]
) -> None:
    port, routes = https_server
    fetcher = HttpsPolicyFetcher(context=trusting(pki), port=port, connect_to="127.0.0.1")
    routes[WELL_KNOWN] = (200, "text/plain; charset=utf-8", ENFORCE.encode())
    assert parse_policy(asyncio.run(fetcher.fetch("example.test"))).mode == "enforce"
    routes[WELL_KNOWN] = (301, "text/plain", b"")
    with pytest.raises(PolicyFetchError, match="301"):
        asyncio.run(fetcher.fetch("example.test"))
    routes[WELL_KNOWN] = (200, "text/html", ENFORCE.encode())
    with pytest.raises(PolicyFetchError, match="content type"):
        asyncio.run(fetcher.fetch("example.test"))
    # The certificate must be valid for mta-sts.<domain>: not for another domain.
    routes[WELL_KNOWN] = (200, "text/plain", ENFORCE.encode())
    with pytest.raises(PolicyFetchError):
        asyncio.run(fetcher.fetch("other.test"))
    # Nor from an untrusted CA (the system's bundle does not know ours).
    plain = HttpsPolicyFetcher(port=port, connect_to="127.0.0.1")
    with pytest.raises(PolicyFetchError):
        asyncio.run(plain.fetch("example.test"))


# -- SmtpSender with a policy ------------------------------------------------------------
class Accept:
    def __init__(self) -> None:
        self.received: list[tuple[str, bool]] = []  # (recipient, over TLS)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.received.append((envelope.rcpt_tos[0], session.ssl is not None))
        return "250 ok"


class Lease:
    def __init__(self, msg_id: int, destination: str) -> None:
        self.msg_id, self.destination, self.source, self.attempt = msg_id, destination, "", 1


def msg(recipient: str) -> OutgoingMessage:
    return OutgoingMessage("s@mailretry.test", recipient, b"Subject: t\r\n\r\nhi\r\n")


async def run_sender(
    ctx: ssl.SSLContext | None,
    sts: MtaSts,
    sends: list[tuple[str, str]],
    *,
    mx_name: str = "mx.example.test",
    client_ctx: ssl.SSLContext | None = None,
) -> tuple[list[object], Accept, Any, list[tuple[str, str, str]]]:
    """An aiosmtpd server (STARTTLS with ``ctx``) known as ``mx_name``; sends
    (destination, recipient) pairs in order through one SmtpSender."""
    loop = asyncio.get_running_loop()
    handler = Accept()
    srv = await loop.create_server(
        lambda: SMTP(handler, hostname="mx", tls_context=ctx, loop=loop), "127.0.0.1", 0
    )
    port = srv.sockets[0].getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port, mx_name)
    reports: list[tuple[str, str, str]] = []
    sender = SmtpSender(
        resolver=StaticResolver(
            {name: endpoint for d, r in sends for name in (d, r.rpartition("@")[2])}
        ),
        limit=lambda d, s: 5,
        local_hostname="client.mailretry.test",
        tls_context=client_ctx,
        mta_sts=sts,
        mta_sts_report=lambda *r: reports.append(r),
    )
    try:
        async with sender:
            outs = [
                await sender.send(Lease(i, d), msg(r))  # type: ignore[arg-type]
                for i, (d, r) in enumerate(sends)
            ]
        return outs, handler, sender.stats, reports
    finally:
        srv.close()
        await srv.wait_closed()


def transport(outcome: object) -> str:
    assert isinstance(outcome, mailretry.Reply), outcome
    return outcome.transport


def policy_for(mode: str, mx: str = "mx.example.test") -> MtaSts:
    text = f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"
    sts, _dns, _fetcher, _clock = sts_with(
        {"_mta-sts.example.test": ["v=STSv1; id=1"]}, {"example.test": text}
    )
    return sts


def test_enforce_delivers_over_verified_tls_to_a_matching_mx(pki: dict[str, Path]) -> None:
    outs, handler, stats, reports = asyncio.run(
        run_sender(
            server_context(pki, "mx.example.test"),
            policy_for("enforce"),
            [("example.test", "u@example.test"), ("example.test", "v@example.test")],
            client_ctx=trusting(pki),
        )
    )
    assert outs == ["250 ok", "250 ok"]
    assert handler.received == [("u@example.test", True), ("v@example.test", True)]
    assert stats.connections_opened == 1 and stats.connections_reused == 1
    assert stats.mta_sts_refused == 0 and reports == []


def test_enforce_refuses_an_untrusted_certificate(pki: dict[str, Path]) -> None:
    # Trusted CA, but the certificate names another host than the MX.
    outs, handler, stats, reports = asyncio.run(
        run_sender(
            server_context(pki, "mta-sts.example.test"),
            policy_for("enforce"),
            [("example.test", "u@example.test")],
            client_ctx=trusting(pki),
        )
    )
    assert transport(outs[0]) == "tls_failure" and "MTA-STS (enforce)" in str(outs[0])
    assert handler.received == [] and stats.mta_sts_refused == 1
    assert reports and reports[0][:2] == ("example.test", "mx.example.test")


def test_enforce_refuses_a_server_without_starttls() -> None:
    outs, handler, stats, _ = asyncio.run(
        run_sender(None, policy_for("enforce"), [("example.test", "u@example.test")])
    )
    assert transport(outs[0]) == "tls_failure" and handler.received == []
    assert stats.mta_sts_refused == 1


def test_enforce_skips_mx_hosts_outside_the_policy() -> None:
    outs, handler, stats, reports = asyncio.run(
        run_sender(
            None,
            policy_for("enforce", mx="*.elsewhere.test"),
            [("example.test", "u@example.test")],
        )
    )
    assert transport(outs[0]) == "tls_failure" and "not in the policy" in str(outs[0])
    assert handler.received == [] and stats.connections_opened == 0
    assert reports == [
        ("example.test", "mx.example.test", "MX mx.example.test is not in the policy")
    ]


def test_testing_mode_delivers_and_reports_what_enforce_would_refuse(
    pki: dict[str, Path],
) -> None:
    # Self-signed from the client's view (the CA is not trusted here).
    outs, handler, stats, reports = asyncio.run(
        run_sender(
            server_context(pki, "mx.example.test"),
            policy_for("testing", mx="*.elsewhere.test"),
            [("example.test", "u@example.test")],
        )
    )
    assert outs == ["250 ok"] and handler.received == [("u@example.test", True)]
    assert stats.mta_sts_testing == 2 and stats.mta_sts_refused == 0  # the MX, the certificate
    assert [r[1] for r in reports] == ["mx.example.test", "mx.example.test"]


def test_the_policy_is_the_recipient_domains_not_the_sites(pki: dict[str, Path]) -> None:
    """Two domains rolled up under one destination (a site): the one without
    a policy is delivered over an unverified connection; the enforcing one
    does not reuse that connection and opens a verified one."""
    site = "(mx).example.test"
    outs, handler, stats, _ = asyncio.run(
        run_sender(
            server_context(pki, "mx.example.test"),
            policy_for("enforce"),
            [(site, "u@other.test"), (site, "v@example.test"), (site, "w@other.test")],
            client_ctx=trusting(pki),
        )
    )
    assert outs == ["250 ok"] * 3
    assert [r for r, _ in handler.received] == ["u@other.test", "v@example.test", "w@other.test"]
    # other.test has no policy: opportunistic (encrypted, unverified) on a
    # first connection; example.test needs a verified one, the second.
    assert stats.connections_opened == 2 and stats.mta_sts_refused == 0
