"""Private Postfix and dnsmasq instances for the real-server tests (loopback only).

:class:`PrivatePostfix` writes a ``main.cf``/``master.cf`` into its own
directory and runs ``postfix -c DIR start``: its own queue and data
directories, one ``smtpd`` listener per test destination on 127.0.0.x and one
shared port, every message discarded after it is queued (``default_transport
= discard``), the log in ``DIR/maillog`` (``maillog_file``). The system's
Postfix (``/etc/postfix``) is never read, started or stopped.
``smtpd_peername_lookup = no`` keeps Postfix from asking the system's DNS about
the loopback clients.

:class:`PrivateDnsmasq` answers for the test domains only (``--local``), on
127.0.0.53 and a free port, with no upstream server.

:class:`PolicyServer` is a Postfix policy service (``check_policy_service``)
in a thread: it greylists new (client, sender, recipient) triples for
``greylist_for`` real seconds and records every request's client address.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def missing_binaries() -> list[str]:
    return [
        name
        for name, path in (("postfix", POSTFIX), ("dnsmasq", DNSMASQ), ("openssl", OPENSSL))
        if not os.access(path, os.X_OK)
    ]


def free_port(addresses: Sequence[str], kind: int = socket.SOCK_STREAM) -> int:
    """A port free on every address (bound and released; a race is unlikely)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        ok = True
        for address in addresses:
            with socket.socket(socket.AF_INET, kind) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((address, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no free port")


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _connectable(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        try:
            s.connect((address, port))
        except OSError:
            return False
    return True


# -- Postfix ------------------------------------------------------------------------
@dataclass
class Listener:
    """One smtpd on ``address``: ``options`` are ``-o`` overrides of main.cf."""

    address: str
    options: dict[str, str] = field(default_factory=dict)


_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PrivatePostfix:
    """A Postfix instance of its own (see the module docstring)."""

    def __init__(self, listeners: Sequence[Listener], port: int, extra: dict[str, str]) -> None:
        self.port = port
        self.listeners = list(listeners)
        # Postfix's daemons run as user postfix: every directory on the way to
        # the queue must be searchable, so not under pytest's 0700 tmp_path.
        self.dir = Path(tempfile.mkdtemp(prefix="mailretry-postfix-"))
        self.dir.chmod(0o755)
        self.maillog = self.dir / "maillog"
        (self.dir / "queue").mkdir(mode=0o755)
        (self.dir / "data").mkdir(mode=0o755)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.dir / "queue"),
            "data_directory": str(self.dir / "data"),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.mailretry.test",
            "mydomain": "mailretry.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "mynetworks": "127.0.0.0/8",
            # Postfix accepts only addresses configured on an interface here;
            # the listeners bind their own 127.0.0.x in master.cf.
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
            "smtpd_peername_lookup": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "default_transport": "discard",
            "relay_transport": "discard",
            "local_transport": "discard",
            "biff": "no",
            "smtputf8_enable": "no",
            # $mynetworks is exempt from anvil's limits unless this is empty.
            "smtpd_client_event_limit_exceptions": "",
            "smtpd_banner": "$myhostname ESMTP",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
        }
        main.update(extra)
        (self.dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        lines = [_SERVICES]
        for lst in listeners:
            lines.append(f"{lst.address}:{port} inet n - n - - smtpd\n")
            lines.append(f"  -o syslog_name=postfix/{lst.address}\n")
            for key, value in lst.options.items():
                lines.append(f"  -o {{{key}={value}}}\n")
        (self.dir / "master.cf").write_text("".join(lines))

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
            env={**os.environ, "MAIL_CONFIG": str(self.dir)},
        )

    def start(self) -> None:
        result = self._run("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stdout}{result.stderr}")
        for lst in self.listeners:
            wait_until(
                lambda a=lst.address: _connectable(a, self.port), 20, f"postfix on {lst.address}"
            )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("stop", check=False)
        pid_file = self.dir / "queue" / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().split()[0])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def accepted_ids(self, listener: str | None = None) -> dict[int, int]:
        """X-Mailretry-Id -> times queued (cleanup logs each queued message's
        Message-ID, which the tests set to ``<ID@mailretry.test>``).
        ``listener``: only messages received by that smtpd."""
        log = self.log()
        queue_ids: set[str] | None = None
        if listener is not None:
            pattern = re.compile(
                rf"postfix/{re.escape(listener)}/smtpd\[\d+\]: ([0-9A-F]+): client="
            )
            queue_ids = set(pattern.findall(log))
        counts: dict[int, int] = {}
        for qid, msg_id in re.findall(
            r"cleanup\[\d+\]: ([0-9A-F]+): message-id=<(\d+)@mailretry\.test>", log
        ):
            if queue_ids is not None and qid not in queue_ids:
                continue
            counts[int(msg_id)] = counts.get(int(msg_id), 0) + 1
        return counts

    def replies(self, listener: str) -> list[str]:
        """The NOQUEUE rejections and connection refusals smtpd logged there."""
        log = self.log()
        out = re.findall(rf"postfix/{re.escape(listener)}/smtpd\[\d+\]: NOQUEUE: reject: (.*)", log)
        out += re.findall(
            rf"postfix/{re.escape(listener)}/smtpd\[\d+\]: warning: "
            r"Connection (?:concurrency|rate) limit exceeded: .*",
            log,
        )
        return out

    def clients(self, listener: str) -> list[str]:
        """Client addresses of the connections that smtpd on ``listener`` logged."""
        return re.findall(
            rf"postfix/{re.escape(listener)}/smtpd\[\d+\]: connect from [^\[]*\[([0-9.]+)\]",
            self.log(),
        )


def self_signed_cert(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


# -- dnsmasq -------------------------------------------------------------------------
class PrivateDnsmasq:
    """dnsmasq answering only from its command line (MX, A, PTR, raw RRs)."""

    def __init__(self, address: str, records: Sequence[str]) -> None:
        self.address = address
        self.port = free_port([address], socket.SOCK_DGRAM)
        self.dir = Path(tempfile.mkdtemp(prefix="mailretry-dnsmasq-"))
        self._args = [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--listen-address={address}",
            "--bind-interfaces",
            f"--port={self.port}",
            f"--pid-file={self.dir / 'dnsmasq.pid'}",
            "--local=/test/",
            "--local-ttl=60",
            "--user=root",
            "--log-facility=-",
            *records,
        ]
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.dir / "log", "wb") as log:
            self._proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=log)
        wait_until(self._answers, 20, "dnsmasq")

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {(self.dir / 'log').read_text(errors='replace')}")
        import dns.exception
        import dns.message
        import dns.query

        try:
            dns.query.udp(
                dns.message.make_query("probe.test", "A"), self.address, timeout=0.5, port=self.port
            )
        except (dns.exception.Timeout, OSError):
            return False
        return True

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# -- policy service -------------------------------------------------------------------
class PolicyServer:
    """Postfix policy delegation (SMTPD_POLICY_README) over TCP on loopback."""

    def __init__(self, greylist_for: float) -> None:
        self.greylist_for = greylist_for
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.requests: list[dict[str, str]] = []
        self.deferred = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                attrs: dict[str, str] = {}
                for raw in self.rfile:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line:
                        key, _, value = line.partition("=")
                        attrs[key] = value
                        continue
                    action = outer.decide(attrs)
                    self.wfile.write(f"action={action}\n\n".encode())
                    self.wfile.flush()
                    attrs = {}

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def decide(self, attrs: dict[str, str]) -> str:
        key = (attrs.get("client_address", ""), attrs.get("sender", ""), attrs.get("recipient", ""))
        now = time.monotonic()
        with self._lock:
            self.requests.append(attrs)
            first = self.first_seen.setdefault(key, now)
            if now - first < self.greylist_for:
                self.deferred += 1
                return f"DEFER_IF_PERMIT Greylisted, try again in {self.greylist_for:g} seconds"
        return "DUNNO"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@contextlib.contextmanager
def running(*services: PrivatePostfix | PrivateDnsmasq | PolicyServer) -> Iterator[None]:
    started: list[PrivatePostfix | PrivateDnsmasq | PolicyServer] = []
    try:
        for service in services:
            service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()
        for service in services:
            if service not in started and isinstance(service, PrivatePostfix | PrivateDnsmasq):
                shutil.rmtree(service.dir, ignore_errors=True)
