"""mailretry.dns: MX resolution rules, caching and rollup, with a fake DNS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import mailretry
from mailretry.dns import (
    DnsAnswer,
    DnsFailure,
    Endpoint,
    MxResolver,
    NoData,
    NxDomain,
    PermanentDnsFailure,
    site_name,
)


class FakeDns:
    """Zone data: {(name, type): records | "nxdomain" | "servfail"}; a name
    absent from ``names`` is NXDOMAIN, a present name without the type NoData."""

    def __init__(self, zone: dict[tuple[str, str], Any], ttl: float = 300.0) -> None:
        self.zone = zone
        self.ttl = ttl
        self.names = {name for name, _ in zone}
        self.queries: list[tuple[str, str]] = []

    async def __call__(self, name: str, rdtype: str) -> DnsAnswer:
        self.queries.append((name, rdtype))
        value = self.zone.get((name, rdtype))
        if value == "servfail":
            raise DnsFailure(f"{name}: SERVFAIL")
        if value is None:
            if name in self.names:
                raise NoData(name)
            raise NxDomain(name)
        return DnsAnswer(tuple(value), self.ttl)


ZONE: dict[tuple[str, str], Any] = {
    ("a.test", "MX"): ["20 mx2.a.test.", "10 mx1.a.test."],
    ("mx1.a.test", "A"): ["192.0.2.1"],
    ("mx2.a.test", "A"): ["192.0.2.2", "192.0.2.3"],
    ("implicit.test", "A"): ["192.0.2.9"],
    ("nomail.test", "MX"): ["0 ."],
    ("broken.test", "MX"): "servfail",
    ("noaddr.test", "TXT"): ["x"],
    ("dangling.test", "MX"): ["10 gone.test."],
    ("hosted1.test", "MX"): ["10 mx.provider.test.", "20 alt1.mx.provider.test."],
    ("hosted2.test", "MX"): ["5 alt1.mx.provider.test.", "5 mx.provider.test."],
    ("mx.provider.test", "A"): ["192.0.2.20"],
    ("alt1.mx.provider.test", "A"): ["192.0.2.21"],
}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def resolver(zone: dict[tuple[str, str], Any] | None = None, **kw: Any) -> tuple[MxResolver, Any]:
    fake = FakeDns(zone or ZONE)
    return MxResolver(lookup=fake, smtp_port=2525, **kw), fake


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_mx_in_preference_order_with_addresses() -> None:
    r, _ = resolver()
    endpoints = run(r.resolve("A.test."))
    assert endpoints == [
        Endpoint("192.0.2.1", 2525, "mx1.a.test"),
        Endpoint("192.0.2.2", 2525, "mx2.a.test"),
        Endpoint("192.0.2.3", 2525, "mx2.a.test"),
    ]


def test_implicit_mx_when_there_is_no_mx_record() -> None:
    r, _ = resolver()
    result = run(r.mx("implicit.test"))
    assert result.implicit and [h.host for h in result.hosts] == ["implicit.test"]
    assert run(r.resolve("implicit.test")) == [Endpoint("192.0.2.9", 2525, "implicit.test")]


def test_null_mx_is_permanent_5_1_10() -> None:
    r, _ = resolver()
    with pytest.raises(PermanentDnsFailure) as info:
        run(r.resolve("nomail.test"))
    assert info.value.reply.startswith("556 5.1.10 ")
    c = mailretry.classify(info.value.reply)
    assert not c.transient and c.action == "bounce"


def test_nxdomain_is_permanent_servfail_is_transient() -> None:
    r, _ = resolver()
    with pytest.raises(PermanentDnsFailure) as info:
        run(r.resolve("missing.test"))
    assert info.value.reply.startswith("550 5.1.2 ")
    assert mailretry.classify(info.value.reply).action == "bounce"
    with pytest.raises(DnsFailure) as transient:
        run(r.resolve("broken.test"))
    assert not isinstance(transient.value, PermanentDnsFailure)
    # No MX and no address: permanent.
    with pytest.raises(PermanentDnsFailure):
        run(r.resolve("noaddr.test"))
    # Every MX host without an address: permanent too.
    with pytest.raises(PermanentDnsFailure):
        run(r.resolve("dangling.test"))


def test_answers_are_cached_for_their_ttl_and_failures_are_not() -> None:
    clock = Clock()
    r, fake = resolver(clock=clock, min_ttl=1, max_ttl=3600)
    run(r.resolve("a.test"))
    first = len(fake.queries)
    run(r.resolve("a.test"))
    assert len(fake.queries) == first  # all from the cache
    clock.t = 301.0  # past the 300 s TTL
    run(r.resolve("a.test"))
    assert len(fake.queries) == 2 * first
    for _ in range(2):
        with pytest.raises(DnsFailure):
            run(r.resolve("broken.test"))
    assert fake.queries.count(("broken.test", "MX")) == 2  # SERVFAIL not cached


def test_equal_preferences_are_shuffled_by_seed_and_stable() -> None:
    zone = {("eq.test", "MX"): [f"10 mx{i}.eq.test." for i in range(8)]}
    orders = {
        tuple(h.host for h in run(resolver(zone, seed=s)[0].mx("eq.test")).hosts) for s in range(6)
    }
    assert len(orders) > 1  # spread over the hosts
    again = run(resolver(zone, seed=3)[0].mx("eq.test")).hosts
    assert again == run(resolver(zone, seed=3)[0].mx("eq.test")).hosts


def test_site_rolls_up_domains_with_the_same_mx_set() -> None:
    r, _ = resolver()
    s1, s2 = run(r.site("hosted1.test")), run(r.site("hosted2.test"))
    assert s1 == s2 == "(alt1)?.mx.provider.test"
    assert run(r.site("a.test")) == "(mx1|mx2).a.test"
    assert run(r.site("implicit.test")) == "implicit.test"
    assert run(r.site("broken.test")) == "broken.test"  # unknown now: the domain itself
    assert site_name(["mx.one.example", "mx.other.example"]) == "mx.one.example|mx.other.example"
    assert site_name(["b.x.example", "a.x.example"]) == "(a|b).x.example"
    # The site is a valid engine destination.
    engine = mailretry.Engine()
    engine.submit(1, s1, 1_700_000_000.0)
    assert engine.take_ready(1_700_000_000.0, 1)[0].destination == s1


def test_dnspython_lookup_maps_errors() -> None:
    pytest.importorskip("dns.asyncresolver")
    from mailretry.dns import DnspythonLookup

    # A closed port on loopback: no server answers, a transient failure.
    lookup = DnspythonLookup(["127.0.0.1"], port=9, timeout=0.3)
    with pytest.raises(DnsFailure) as info:
        run(lookup("example.test", "MX"))
    assert not isinstance(info.value, PermanentDnsFailure)
