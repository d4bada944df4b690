"""Send mail through mailretry's asyncio driver and aiosmtplib.

To the Internet: each recipient domain's MX records are looked up (dnspython),
domains are rolled up by MX set, STARTTLS is used when offered::

    python examples/send_with_aiosmtplib.py --to alice@example.com --to bob@example.org

``--nameserver IP[:PORT]`` asks that DNS server instead of the system's
resolvers (``tests/python/test_real_servers.py`` runs this script against a
private dnsmasq and Postfix that way, with ``--smtp-port``).

Options: ``--source NAME=IP[/EHLO]`` binds connections of source NAME to a local
address (repeat for several; messages are spread over them), ``--metrics PORT``
serves Prometheus metrics on 127.0.0.1, ``--server HOST:PORT`` relays everything
through one server instead of MX resolution, ``--state DIR`` keeps the engine
in a crash-safe journal (``Engine.open_durable``): run it again after killing it
and it carries on where it stopped (same recipients and count).

Self-contained demo: ``--demo`` starts a loopback aiosmtpd server that greylists
every new sender/recipient pair for two minutes and rejects "nobody@...", and
runs in virtual time so the greylisting retry takes no real time::

    python examples/send_with_aiosmtplib.py --demo

Needs ``pip install 'mailretry[smtp]' aiosmtpd`` (aiosmtpd only for --demo) and
``mailretry[metrics]`` for ``--metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
from typing import Any

import mailretry
from mailretry.aio import Clock, Driver, SystemClock, VirtualClock
from mailretry.mtasts import MtaSts
from mailretry.smtp import (
    Endpoint,
    MxResolver,
    OutgoingMessage,
    Resolver,
    SmtpSender,
    SourceAddress,
    StaticResolver,
)


def build_message(sender: str, recipient: str, n: int) -> OutgoingMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"mailretry example #{n}"
    msg.set_content(f"Message {n}, delivered by mailretry's asyncio driver.\n")
    return OutgoingMessage(sender, recipient, msg)


def print_event(event: dict[str, Any]) -> None:
    where = event["destination"]
    if event.get("domain"):
        where = f"{event['domain']} @ {where}"
    if event["msg_id"] is not None:
        where = f"message {event['msg_id']} -> {where}"
    detail = event["reply"] or event["detail"]
    print(f"  {event['kind']:<22} {where:<40} {detail}")


async def demo_server(clock: Clock) -> tuple[Any, int]:
    from aiosmtpd.smtp import SMTP  # only the demo needs it

    class Handler:
        def __init__(self) -> None:
            self.first_seen: dict[tuple[str, str], float] = {}

        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if address.startswith("nobody@"):
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            key = (str(envelope.mail_from), address)
            first = self.first_seen.setdefault(key, clock.now())
            if clock.now() - first < 120:
                return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted"
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            print(f"  [server] accepted mail for {', '.join(envelope.rcpt_tos)}")
            return "250 2.0.0 Ok: queued"

    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: SMTP(Handler(), hostname="mx.demo", loop=loop), "127.0.0.1", 0
    )
    return srv, int(srv.sockets[0].getsockname()[1])


def parse_sources(specs: list[str]) -> dict[str, SourceAddress]:
    sources: dict[str, SourceAddress] = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        address, _, ehlo = rest.partition("/")
        if not name or not address:
            raise SystemExit(f"--source {spec!r}: expected NAME=IP[/EHLO]")
        sources[name] = SourceAddress(address, ehlo or None)
    return sources


async def main() -> None:
    parser = argparse.ArgumentParser(description="mailretry + aiosmtplib example")
    parser.add_argument("--demo", action="store_true", help="start a loopback test server")
    parser.add_argument("--server", help="relay everything through HOST:PORT (no MX lookup)")
    parser.add_argument("--to", action="append", default=[], help="recipient (repeatable)")
    parser.add_argument("--from", dest="sender", default="sender@example.net")
    parser.add_argument("--count", type=int, default=3, help="messages per recipient")
    parser.add_argument("--source", action="append", default=[], help="NAME=IP[/EHLO]")
    parser.add_argument("--ehlo", default=None, help="EHLO name without --source")
    parser.add_argument("--metrics", type=int, default=None, help="serve /metrics on this port")
    parser.add_argument("--state", help="directory for a crash-safe engine (journal)")
    parser.add_argument(
        "--mta-sts", action="store_true", help="apply recipient domains' MTA-STS policies"
    )
    parser.add_argument(
        "--nameserver",
        help="IP[:PORT] of the DNS server for MX lookups (default: the system's resolvers)",
    )
    parser.add_argument(
        "--smtp-port", type=int, default=25, help="port of the mail exchangers (default 25)"
    )
    args = parser.parse_args()
    if args.demo and (args.state or args.server):
        parser.error("--demo runs in virtual time on loopback: no --state or --server")
    recipients = args.to or (
        ["alice@example.com", "bob@example.org", "nobody@example.org"] if args.demo else []
    )
    if not recipients:
        parser.error("give --to ADDRESS (or --demo)")
    sources = parse_sources(args.source)

    config = {"retry": {"lifetime": "1d"}, "lease_timeout": "10m"}
    engine = (
        mailretry.Engine.open_durable(args.state, config, seed=1)
        if args.state
        else mailretry.Engine(config)
    )
    clock: Clock
    resolver: Resolver
    server = None
    if args.demo:
        clock = VirtualClock(1_700_000_000.0, speed=0.0, skip_idle=True)
        server, port = await demo_server(clock)
        domains = sorted({r.rpartition("@")[2].lower() for r in recipients})
        resolver = StaticResolver({d: Endpoint("127.0.0.1", port) for d in domains})
    elif args.server:
        clock = SystemClock()
        host, _, port_text = args.server.rpartition(":")
        domains = sorted({r.rpartition("@")[2].lower() for r in recipients})
        resolver = StaticResolver({d: Endpoint(host, int(port_text)) for d in domains})
    else:
        clock = SystemClock()
        if args.nameserver:
            ns, _, ns_port = args.nameserver.partition(":")
            resolver = MxResolver([ns], port=int(ns_port or 53), smtp_port=args.smtp_port)
        else:
            resolver = MxResolver(smtp_port=args.smtp_port)  # the system's DNS resolvers

    # A message's payload is a function of its id, so a restart with --state
    # finds the payloads of messages submitted by an earlier run.
    def message_of(msg_id: int) -> OutgoingMessage:
        n, i = divmod(msg_id - 1, len(recipients))
        return build_message(args.sender, recipients[i], n)

    sender = SmtpSender(
        engine,
        resolver,
        local_hostname=args.ehlo or "client.example.net",
        sources=sources,
        connect_timeout=10,
        command_timeout=30,
        attempt_timeout=120,
        mta_sts=MtaSts() if args.mta_sts and not args.demo else None,
        mta_sts_report=lambda domain, mx, why: print(f"MTA-STS {domain} {mx}: {why}"),
    )
    observer = None
    if args.metrics is not None:
        from mailretry.metrics import Metrics

        observer = Metrics(engine)
        observer.serve(args.metrics)
        print(f"metrics on http://127.0.0.1:{args.metrics}/metrics")
    driver = Driver(
        engine,
        sender,
        message_of,
        clock=clock,
        on_event=print_event,
        route=sender.route,
        observer=observer,
    )
    source_names = sorted(sources) or [""]
    new = 0
    if engine.stats()["submitted"] == 0:
        total = args.count * len(recipients)
        for msg_id in range(1, total + 1):
            domain = message_of(msg_id).recipient.rpartition("@")[2]
            source = source_names[msg_id % len(source_names)] or None
            site = await driver.submit_to(msg_id, domain, source=source)
            if site != domain.lower():
                print(f"  {domain} rolls up to site {site}")
            new += 1
    print(f"submitted {new} messages; {engine.stats()['pending']} pending")
    try:
        stats = await driver.run(until_idle=True)
    finally:
        await sender.aclose()
        if server is not None:
            server.close()
    s = engine.stats()
    print(
        f"done: {s['delivered']} delivered, {s['bounced']} bounced, {s['expired']} expired, "
        f"{s['pending']} pending; {stats.leases} attempts in this run; "
        f"{sender.stats.tls_sessions} TLS sessions"
    )


if __name__ == "__main__":
    asyncio.run(main())
