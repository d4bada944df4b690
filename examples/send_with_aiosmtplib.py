"""Send mail through mailretry's asyncio driver and aiosmtplib.

Against a local SMTP server (e.g. ``python -m aiosmtpd -n -l 127.0.0.1:8025``)::

    python examples/send_with_aiosmtplib.py --server 127.0.0.1:8025 \\
        --to alice@example.com --to bob@example.org --count 5

Self-contained demo: ``--demo`` starts a loopback aiosmtpd server that greylists
every new sender/recipient pair for two minutes and rejects "nobody@...", and
runs in virtual time so the five-minute greylisting retry takes no real time::

    python examples/send_with_aiosmtplib.py --demo

Needs ``pip install 'mailretry[smtp]' aiosmtpd`` (aiosmtpd only for --demo).
Add ``--state DIR`` to keep the engine in a crash-safe journal (mailretry.durable):
run it again after killing it and it carries on where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import itertools
from typing import Any

import mailretry
from mailretry.aio import Clock, Driver, SystemClock, VirtualClock
from mailretry.durable import DurableEngine
from mailretry.smtp import Endpoint, OutgoingMessage, SmtpSender, StaticResolver


def build_message(sender: str, recipient: str, n: int) -> OutgoingMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = f"mailretry example #{n}"
    msg.set_content(f"Message {n}, delivered by mailretry's asyncio driver.\n")
    return OutgoingMessage(sender, recipient, msg)


def print_event(event: dict[str, Any]) -> None:
    where = event["destination"]
    what = event["kind"]
    if event["msg_id"] is not None:
        where = f"message {event['msg_id']} -> {where}"
    detail = event["reply"] or event["detail"]
    print(f"  {what:<22} {where:<36} {detail}")


async def demo_server(clock: Clock, domains: list[str]) -> tuple[Any, dict[str, int]]:
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
    handler = Handler()
    srv = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.demo", loop=loop), "127.0.0.1", 0
    )
    port = srv.sockets[0].getsockname()[1]
    return srv, {d: port for d in domains}


async def main() -> None:
    parser = argparse.ArgumentParser(description="mailretry + aiosmtplib example")
    parser.add_argument("--server", help="HOST:PORT every destination is delivered to")
    parser.add_argument("--demo", action="store_true", help="start a loopback test server")
    parser.add_argument("--to", action="append", default=[], help="recipient (repeatable)")
    parser.add_argument("--from", dest="sender", default="sender@example.net")
    parser.add_argument("--count", type=int, default=3, help="messages per recipient")
    parser.add_argument("--state", help="directory for a crash-safe engine (journal)")
    args = parser.parse_args()
    if not args.demo and not args.server:
        parser.error("give --server HOST:PORT or --demo")
    recipients = args.to or ["alice@example.com", "bob@example.org", "nobody@example.org"]
    domains = sorted({r.split("@", 1)[1].lower() for r in recipients})

    config = {"retry": {"lifetime": "1d"}, "lease_timeout": "10m"}
    engine: Any = (
        DurableEngine(args.state, config, seed=1) if args.state else mailretry.Engine(config)
    )
    clock: Clock
    server = None
    if args.demo:
        start = max(1_700_000_000.0, getattr(engine, "last_time", None) or 0.0)
        clock = VirtualClock(start, speed=0.0, skip_idle=True)
        server, ports = await demo_server(clock, domains)
        endpoints = {d: Endpoint("127.0.0.1", p) for d, p in ports.items()}
    else:
        clock = SystemClock()
        host, _, port = args.server.rpartition(":")
        endpoints = {d: Endpoint(host, int(port)) for d in domains}

    messages: dict[int, OutgoingMessage] = {}
    first_id = engine.stats()["submitted"] + 1
    for msg_id, (rcpt, n) in zip(
        itertools.count(first_id),
        [(r, n) for n in range(args.count) for r in recipients],
        strict=False,
    ):
        messages[msg_id] = build_message(args.sender, rcpt, n)

    sender = SmtpSender(
        engine,
        StaticResolver(endpoints),
        local_hostname="client.example.net",
        connect_timeout=10,
        command_timeout=30,
    )
    driver = Driver(engine, sender, messages, clock=clock, on_event=print_event)
    for msg_id, msg in messages.items():
        driver.submit(msg_id, msg.recipient.split("@", 1)[1])
    print(f"submitted {len(messages)} messages to {', '.join(domains)}")
    try:
        stats = await driver.run(until_idle=True)
    finally:
        await sender.aclose()
        if server is not None:
            server.close()
        if args.state:
            engine.close()
    s = engine.stats()
    print(
        f"done: {s['delivered']} delivered, {s['bounced']} bounced, {s['expired']} expired, "
        f"{s['pending']} pending; {stats.leases} attempts in this run"
    )


if __name__ == "__main__":
    asyncio.run(main())
