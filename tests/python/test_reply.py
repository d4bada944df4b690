from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailretry
from mailretry import InvalidInputError, MailretryError


def test_parse_single_line() -> None:
    r = mailretry.parse_reply("421 4.7.0 Try again later")
    assert (r.code, r.enhanced, r.text) == (421, "4.7.0", "Try again later")
    assert r.transient and not r.success
    assert r.transport == "reply"


def test_parse_multiline_repeated_enhanced_code() -> None:
    r = mailretry.parse_reply(
        "421-4.7.28 Our system has detected an unusual rate\r\n"
        "421-4.7.28 of unsolicited mail originating from your IP\r\n"
        "421 4.7.28 address. - gsmtp\r\n"
    )
    assert r.code == 421
    assert r.enhanced == "4.7.28"
    assert "4.7.28" not in r.text
    assert r.text.splitlines()[-1] == "address. - gsmtp"


def test_parse_without_enhanced_code() -> None:
    r = mailretry.parse_reply("250 OK")
    assert r.success and r.enhanced is None and r.code == 250


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "hello world",
        "42 short",
        "999 too big",
        "100 too small",
        "421\x00 nul",
        "421-first\r\n550 second",
        "x" * 100_000,
    ],
)
def test_malformed_replies_raise_value_error(raw: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        mailretry.parse_reply(raw)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, MailretryError)
    assert str(info.value)


def test_invalid_utf8_bytes_raise() -> None:
    with pytest.raises(InvalidInputError):
        mailretry.parse_reply(b"421 4.7.0 caf\xc3 bad")


@pytest.mark.parametrize(
    "kind",
    ["connection_refused", "connect_timeout", "tls_failure", "connection_dropped", "dns_failure"],
)
def test_transport_outcomes(kind: str) -> None:
    r = mailretry.transport_reply(kind)
    assert r.transport == kind and r.transient and r.code == 0


def test_unknown_transport_kind_raises() -> None:
    with pytest.raises(InvalidInputError):
        mailretry.transport_reply("meteor_strike")


@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=600) | st.binary(max_size=600))
def test_parser_never_crashes_on_arbitrary_input(raw: str | bytes) -> None:
    try:
        r = mailretry.parse_reply(raw)
    except (InvalidInputError, UnicodeError):
        return
    assert 200 <= r.code <= 599
    c = mailretry.classify(str(r))
    assert c.category in mailretry.CATEGORIES and c.action in mailretry.ACTIONS


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["421", "450", "451", "452", "550", "552", "554"]),
    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=200),
)
def test_well_formed_replies_always_parse(code: str, text: str) -> None:
    r = mailretry.parse_reply(f"{code} {text}")
    assert r.code == int(code)
    assert r.transient == code.startswith("4")


def test_enhanced_class_mismatch_is_kept_not_rejected() -> None:
    # Exchange sends "550 4.4.7 QUEUE.Expired": refusing it would lose the reply.
    r = mailretry.parse_reply("550 4.4.7 QUEUE.Expired; message expired")
    assert (r.code, r.enhanced, r.transient) == (550, "4.4.7", False)


def test_lenient_parse_of_log_text() -> None:
    r = mailretry.parse_reply_lenient("5.1.1 <x@example.com>: User unknown")
    assert (r.code, r.enhanced, r.transient) == (0, "5.1.1", False)
    with pytest.raises(InvalidInputError):
        mailretry.parse_reply("5.1.1 <x@example.com>: User unknown")
    with pytest.raises(InvalidInputError):
        mailretry.parse_reply_lenient("")
    c = mailretry.classify("BL000101 listed on a blocklist", lenient=True)
    assert c.code == 0 and c.rule
