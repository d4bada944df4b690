"""mailretry.aio + mailretry.smtp + mailretry.dns against a real Postfix and dnsmasq.

A private Postfix instance (``postfix -c DIR``, see ``realservers.py``) listens
on 127.0.0.21-26 with one behaviour per address, and a private dnsmasq serves
the test domains' MX and A records. Postfix runs on wall-clock time (anvil
windows, greylisting), so these tests run the driver on a clock at real speed
(``VirtualClock(speed=1)``, so that the engine's times still start at a fixed
T0) and retry after seconds instead of minutes. Each test checks its own
deliveries in Postfix's log: every message queued exactly once, nothing lost.

``.ci/run`` installs postfix, dnsmasq and openssl; without them these tests skip.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiosmtplib")
pytest.importorskip("dns.asyncresolver")

import mailretry
import realservers
from mailretry.aio import Driver, VirtualClock
from mailretry.dns import MxResolver
from mailretry.smtp import OutgoingMessage, SmtpSender, SourceAddress
from realservers import Listener, PolicyServer, PrivateDnsmasq, PrivatePostfix

_missing = realservers.missing_binaries()
pytestmark = pytest.mark.skipif(
    bool(_missing) or realservers.os.geteuid() != 0,
    reason=f"real-server tests need root and {', '.join(_missing) or 'postfix, dnsmasq'} "
    "(installed by .ci/run: apt-get install postfix dnsmasq-base openssl)",
)

T0 = 1_700_000_000.0
OPEN, CAPPED, RATED, GREY, PTR, TLS = (f"127.0.0.{n}" for n in range(21, 27))
DEAD = "127.0.0.20"  # nothing listens: the first MX of fallback.test
DNS = "127.0.0.53"
CAP_DOMAINS = [f"cap{i}.test" for i in range(10)]
GREYLIST_SECONDS = 3.0
RATE_LIMIT = (20, 2)  # messages per anvil_rate_time_unit seconds, per client: 10/s

# Retries in seconds: Postfix's windows are real time.
CONFIG: dict[str, Any] = {
    "retry": {
        "initial_delay": "1s",
        "multiplier": 1.5,
        "max_delay": "4s",
        "lifetime": "10m",
        "jitter": "none",
    },
    "builtin_overrides": False,
    "overrides": [
        {
            "name": "greylist",
            "categories": ["greylisting"],
            "fixed_delay": "2s",
            "advance_backoff": False,
        }
    ],
    "destination_defaults": {
        "initial_concurrency": 5,
        "max_concurrency": 10,
        "concurrency_ceiling_hold": "10m",
        "rate": "unlimited",
        "suspend_base": "2s",
        "suspend_max": "10s",
        "rate_quiet_period": "1m",
    },
    # The rated destination starts above Postfix's 10/s, so it must slow down.
    "destinations": [{"destination": "mx.rated.test", "rate": "30/1s"}],
    "structural": {"evidence_messages": 4, "evidence_span": "2s", "probe_interval": "1m"},
    "lease_timeout": "5m",
    # Sub-second rate pacing (the default wheel ticks once a second).
    "timer_resolution": "10ms",
}


@dataclass
class Servers:
    postfix: PrivatePostfix
    dns: PrivateDnsmasq
    policy: PolicyServer

    def resolver(self) -> MxResolver:
        return MxResolver([self.dns.address], port=self.dns.port, smtp_port=self.postfix.port)


def dns_records() -> list[str]:
    hosts = {
        "mx.open-provider.test": OPEN,
        "mx.capped-provider.test": CAPPED,
        "mx.rated.test": RATED,
        "mx.grey.test": GREY,
        "mx.ptr.test": PTR,
        "mx.tls.test": TLS,
        "mx1.fallback.test": DEAD,
        "mx2.fallback.test": OPEN,
        "implicit.test": OPEN,
    }
    records = [f"--host-record={name},{ip}" for name, ip in hosts.items()]
    mx = {
        "open.test": [("mx.open-provider.test", 10)],
        "rate.test": [("mx.rated.test", 10)],
        "grey.test": [("mx.grey.test", 10)],
        "ptr.test": [("mx.ptr.test", 10)],
        "tls.test": [("mx.tls.test", 10)],
        "fallback.test": [("mx1.fallback.test", 10), ("mx2.fallback.test", 20)],
        **{d: [("mx.capped-provider.test", 10)] for d in CAP_DOMAINS},
    }
    for domain, hosts_of in mx.items():
        records += [f"--mx-host={domain},{host},{pref}" for host, pref in hosts_of]
    # RFC 7505 null MX: preference 0, exchange "." (the root: one zero byte).
    records.append("--dns-rr=nullmx.test,15,000000")
    # PTR records for the two source addresses (forward-confirmed EHLO names).
    records += [
        "--ptr-record=2.0.0.127.in-addr.arpa,out2.mailretry.test",
        "--ptr-record=3.0.0.127.in-addr.arpa,out3.mailretry.test",
    ]
    return records


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    policy = PolicyServer(GREYLIST_SECONDS)
    addresses = [OPEN, CAPPED, RATED, GREY, PTR, TLS, DEAD]
    port = realservers.free_port(addresses)
    certdir = Path(realservers.tempfile.mkdtemp(prefix="mailretry-tls-"))
    certdir.chmod(0o755)
    cert, key = realservers.self_signed_cert(certdir, "mx.tls.test")
    listeners = [
        Listener(OPEN),
        Listener(CAPPED, {"smtpd_client_connection_count_limit": "2"}),
        Listener(RATED, {"smtpd_client_message_rate_limit": str(RATE_LIMIT[0])}),
        Listener(
            GREY,
            {
                "smtpd_recipient_restrictions": ""
                f"check_policy_service inet:127.0.0.1:{policy.port}, permit",
                "smtpd_relay_restrictions": "permit_mynetworks, reject",
            },
        ),
        Listener(PTR, {"smtpd_client_restrictions": "reject_unknown_reverse_client_hostname"}),
        Listener(
            TLS,
            {
                "smtpd_tls_security_level": "may",
                "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key),
                "smtpd_tls_loglevel": "1",
            },
        ),
    ]
    postfix = PrivatePostfix(listeners, port, {"anvil_rate_time_unit": f"{RATE_LIMIT[1]}s"})
    dns = PrivateDnsmasq(DNS, dns_records())
    with realservers.running(policy, dns, postfix):
        yield Servers(postfix, dns, policy)
    realservers.shutil.rmtree(certdir, ignore_errors=True)


# -- the delivery run ---------------------------------------------------------------------
def message(msg_id: int, recipient: str) -> OutgoingMessage:
    content = (
        f"From: sender@mailretry.test\r\nTo: {recipient}\r\nSubject: real server {msg_id}\r\n"
        f"Message-ID: <{msg_id}@mailretry.test>\r\n\r\nbody {msg_id}\r\n"
    )
    return OutgoingMessage("sender@mailretry.test", recipient, content)


@dataclass
class Run:
    engine: mailretry.Engine
    sender: SmtpSender
    events: list[dict[str, Any]]
    sites: dict[int, str]


def deliver(
    servers: Servers,
    recipients: dict[int, str],
    *,
    sources: dict[int, str] | None = None,
    config: dict[str, Any] | None = None,
    stop_on: str | None = None,
    timeout: float = 90.0,
    **sender_options: Any,
) -> Run:
    """Submit every message (with MX rollup) and run until the engine is idle
    (or an event of kind ``stop_on``)."""

    async def go() -> Run:
        engine = mailretry.Engine(config or CONFIG, seed=1)
        clock = VirtualClock(T0, speed=1.0, skip_idle=False)  # real speed: Postfix's clock
        events: list[dict[str, Any]] = []
        payloads = {i: message(i, rcpt) for i, rcpt in recipients.items()}
        options: dict[str, Any] = {
            "local_hostname": "client.mailretry.test",
            "connect_timeout": 5,
            "command_timeout": 10,
            "data_timeout": 10,
            "attempt_timeout": 30,
            "sources": {
                "ip2": SourceAddress("127.0.0.2", "out2.mailretry.test"),
                "ip3": SourceAddress("127.0.0.3", "out3.mailretry.test"),
            },
        }
        options.update(sender_options)
        sender = SmtpSender(engine, servers.resolver(), **options)
        driver: Driver[OutgoingMessage]

        def on_event(event: dict[str, Any]) -> None:
            events.append(event)
            if stop_on is not None and event["kind"] == stop_on:
                driver.stop(drain_timeout=5)

        driver = Driver(
            engine,
            sender,
            payloads,
            clock=clock,
            on_event=on_event,
            route=sender.route,
            max_in_flight=50,
            idle_step=0.01,
        )
        sites = {}
        for msg_id, rcpt in recipients.items():
            source = (sources or {}).get(msg_id)
            sites[msg_id] = await driver.submit_to(msg_id, rcpt.rpartition("@")[2], source=source)
        async with sender:
            try:
                await asyncio.wait_for(driver.run(until_idle=True), timeout)
            except TimeoutError:
                pytest.fail(
                    f"not idle after {timeout} s: {engine.stats()}; "
                    f"{[engine.destination(d) for d in sorted(set(sites.values()))]}"
                )
        engine.check_invariants()
        return Run(engine, sender, events, sites)

    return asyncio.run(go())


def kinds(run: Run, kind: str) -> list[dict[str, Any]]:
    return [e for e in run.events if e["kind"] == kind]


def assert_exactly_once(servers: Servers, ids: range | list[int], listener: str) -> None:
    wanted = set(ids)

    def mine() -> dict[int, int]:  # the module's other tests use other ids
        accepted = servers.postfix.accepted_ids(listener)
        return {i: n for i, n in accepted.items() if min(wanted) <= i <= max(wanted)}

    realservers.wait_until(lambda: set(mine()) >= wanted, 10, "postfix's log")
    accepted = mine()
    assert set(accepted) == wanted, "lost or unexpected messages"
    assert all(n == 1 for n in accepted.values()), "duplicates"


# -- the checks ---------------------------------------------------------------------------
def test_connection_cap_of_two_across_rolled_up_domains(servers: Servers) -> None:
    ids = range(1000, 1200)
    recipients = {i: f"user{i}@{CAP_DOMAINS[i % len(CAP_DOMAINS)]}" for i in ids}
    run = deliver(servers, recipients)
    # Ten domains, one MX: one site, one set of limits.
    assert set(run.sites.values()) == {"mx.capped-provider.test"}
    assert run.engine.stats()["delivered"] == len(ids)
    assert_exactly_once(servers, list(ids), CAPPED)
    refusals = len(servers.postfix.replies(CAPPED))
    assert refusals / len(ids) <= 0.05, f"{refusals} 421s for {len(ids)} deliveries"
    # Events for rolled-up messages name their domain too.
    delivered = kinds(run, "delivered")
    assert all(e["domain"] in CAP_DOMAINS for e in delivered)
    assert run.engine.destination("mx.capped-provider.test")["concurrency_limit"] <= 2
    print(f"connection cap: {refusals} 421s for {len(ids)} deliveries")


def test_anvil_rate_limit_is_adapted_to(servers: Servers) -> None:
    ids = range(2000, 2100)
    run = deliver(servers, {i: f"user{i}@rate.test" for i in ids}, timeout=120)
    assert run.engine.stats()["delivered"] == len(ids)
    assert_exactly_once(servers, list(ids), RATED)
    rejections = [r for r in servers.postfix.replies(RATED) if "too much mail" in r.lower()]
    rejections += [
        e for e in servers.postfix.log().splitlines() if f"/{RATED}/" in e and "rate limit" in e
    ]
    deferred = kinds(run, "deferred")
    assert all(e["category"] == "rate_limit" for e in deferred)
    assert len(deferred) / len(ids) <= 0.5, f"{len(deferred)} rejections for {len(ids)}"
    print(f"anvil rate: {len(deferred)} rejections for {len(ids)} deliveries")
    assert kinds(run, "destination_throttled")


def test_greylisting_is_retried_until_accepted(servers: Servers) -> None:
    ids = range(3000, 3005)
    run = deliver(servers, {i: f"user{i}@grey.test" for i in ids})
    assert run.engine.stats()["delivered"] == len(ids)
    assert_exactly_once(servers, list(ids), GREY)
    deferred = kinds(run, "deferred")
    assert {e["msg_id"] for e in deferred} == set(ids)
    assert all(e["category"] == "greylisting" for e in deferred)
    assert servers.policy.deferred >= len(ids)


def test_broken_ptr_is_flagged(servers: Servers) -> None:
    ids = range(4000, 4008)
    run = deliver(servers, {i: f"user{i}@ptr.test" for i in ids}, stop_on="structural_failure")
    deferred = kinds(run, "deferred")
    assert deferred and all(e["category"] == "ptr_rdns" for e in deferred)
    failures = kinds(run, "structural_failure")
    assert len(failures) == 1 and failures[0]["destination"] == "mx.ptr.test"
    assert "ptr_rdns" in str(failures[0])
    assert servers.postfix.accepted_ids(PTR) == {}


def test_mx_fallback_null_mx_nxdomain_and_implicit_mx(servers: Servers) -> None:
    recipients = {
        5000: "a@fallback.test",
        5001: "b@fallback.test",
        5002: "c@nullmx.test",
        5003: "d@missing.test",
        5004: "e@implicit.test",
    }
    run = deliver(servers, recipients)
    s = run.engine.stats()
    assert (s["delivered"], s["bounced"]) == (3, 2)
    assert run.sender.stats.mx_fallbacks >= 1
    assert_exactly_once(servers, [5000, 5001, 5004], OPEN)
    bounced = {e["msg_id"]: e for e in kinds(run, "bounced")}
    assert "5.1.10" in bounced[5002]["reply"]
    assert "5.1.2" in bounced[5003]["reply"]


def test_self_signed_starttls_server_is_delivered_to(servers: Servers) -> None:
    ids = range(6000, 6005)
    run = deliver(servers, {i: f"user{i}@tls.test" for i in ids})
    assert run.engine.stats()["delivered"] == len(ids)
    assert run.sender.stats.tls_sessions >= 1 and run.sender.stats.tls_fallbacks == 0
    assert_exactly_once(servers, list(ids), TLS)
    assert f"postfix/{TLS}/smtpd" in servers.postfix.log()
    assert "TLS connection established from" in servers.postfix.log()


def test_sources_bind_the_local_address_postfix_sees(servers: Servers) -> None:
    ids = range(7000, 7010)
    sources = {i: ("ip2" if i % 2 else "ip3") for i in ids}
    run = deliver(servers, {i: f"user{i}@open.test" for i in ids}, sources=sources)
    assert run.engine.stats()["delivered"] == len(ids)
    assert_exactly_once(servers, list(ids), OPEN)
    clients = set(servers.postfix.clients(OPEN))
    assert {"127.0.0.2", "127.0.0.3"} <= clients
    # Per-source limits: the engine tracks each source separately.
    site = run.sites[7000]
    assert run.engine.destination(site, "ip2")["delivered"] == 5
    assert run.engine.destination(site, "ip3")["delivered"] == 5


def test_the_example_script_delivers_with_mx_resolution(servers: Servers) -> None:
    """examples/send_with_aiosmtplib.py, as a user runs it, against the
    private DNS: MX lookup with fallback, implicit MX, null MX bounced."""
    script = Path(__file__).resolve().parents[2] / "examples" / "send_with_aiosmtplib.py"
    recipients = ["ann@fallback.test", "bea@implicit.test", "cy@nullmx.test"]
    args = [f"--to={r}" for r in recipients]
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            *args,
            "--count=1",
            f"--nameserver={servers.dns.address}:{servers.dns.port}",
            f"--smtp-port={servers.postfix.port}",
            "--source=ip2=127.0.0.2/out2.mailretry.test",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "done: 2 delivered, 1 bounced, 0 expired, 0 pending" in out, out
    assert "5.1.10" in out  # the null MX's bounce, printed as an event
    realservers.wait_until(
        lambda: all(f"to=<{r}>" in servers.postfix.log() for r in recipients[:2]),
        10,
        "postfix's log",
    )
    log = servers.postfix.log()
    assert "to=<cy@nullmx.test>" not in log
    assert "127.0.0.2" in servers.postfix.clients(OPEN)
