"""Test mail named by message id, and the loopback sender, shared by the kill -9
workers (not a test module).

Message ``n`` goes to ``destinations[n % len(destinations)]``; every
``unknown_every``-th one is addressed to ``nobody@``, which the test server
refuses with a 5xx, so that a run has bounces as well as deliveries. The body
carries the id (``X-Mailretry-Id``), which is how the tests count each
delivery exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mailretry import Engine
from mailretry.smtp import Endpoint, OutgoingMessage, SmtpSender, StaticResolver

SENDER = "sender@mailretry.test"


class NumberedMail:
    def __init__(self, destinations: Sequence[str], unknown_every: int, subject: str) -> None:
        self.destinations = list(destinations)
        self.unknown_every = unknown_every
        self.subject = subject

    def destination_of(self, msg_id: int) -> str:
        return self.destinations[msg_id % len(self.destinations)]

    def recipient_of(self, msg_id: int) -> str:
        local = "nobody" if msg_id % self.unknown_every == 0 else f"user{msg_id}"
        return f"{local}@{self.destination_of(msg_id)}"

    def message_of(self, msg_id: int) -> OutgoingMessage:
        content = (
            f"From: {SENDER}\r\nTo: {self.recipient_of(msg_id)}\r\n"
            f"Subject: {self.subject} {msg_id}\r\nX-Mailretry-Id: {msg_id}\r\n\r\n"
            f"body {msg_id}\r\n"
        )
        return OutgoingMessage(SENDER, self.recipient_of(msg_id), content)


def loopback_sender(engine: Engine, ports: Mapping[str, int]) -> SmtpSender:
    """The workers' sender: each destination is a test server on 127.0.0.1:port.

    The timeouts are long because a worker may be killed and restarted at any
    point, and a slow CI machine must not turn that into timeouts of its own.
    """
    resolver = StaticResolver({d: Endpoint("127.0.0.1", p) for d, p in ports.items()})
    return SmtpSender(
        engine,
        resolver,
        local_hostname="worker.mailretry.test",
        connect_timeout=10,
        command_timeout=60,
        data_timeout=600,
    )
