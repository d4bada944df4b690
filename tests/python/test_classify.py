from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mailretry
from mailretry import Classifier, InvalidInputError
from mailretry.evaluate import evaluate

# Floors a little below what the classifier reaches on the full dev corpus (98.5% category,
# 99.4% action, 99.8% transient); a change that lowers accuracy must fail here.
CATEGORY_FLOOR = 0.98
ACTION_FLOOR = 0.99
TRANSIENT_FLOOR = 0.995
# The validation split (sources nobody read while writing rules): issue 13's floors for
# replies the classifier has not seen.
VALIDATION_FLOORS = (0.95, 0.97, 0.995)


@pytest.mark.parametrize(
    ("reply", "category", "action", "transient"),
    [
        (
            "421 4.7.28 unusual rate of unsolicited mail from your IP",
            "reputation_throttle",
            "throttle",
            True,
        ),
        (
            "421 4.7.0 Too many messages from your IP, rate limit exceeded",
            "rate_limit",
            "throttle",
            True,
        ),
        ("421 4.4.5 Server busy, try again later", "server_busy_capacity", "retry", True),
        ("450 4.2.0 Recipient address rejected: Greylisted", "greylisting", "retry", True),
        (
            "550 5.1.1 The email account that you tried to reach does not exist",
            "mailbox_unknown",
            "bounce",
            False,
        ),
        (
            "421 Too many concurrent SMTP connections from this IP",
            "too_many_connections",
            "throttle",
            True,
        ),
        ("550 Connection frequency limited", "too_many_connections", "throttle", True),
    ],
)
def test_known_replies(reply: str, category: str, action: str, transient: bool) -> None:
    r = mailretry.classify(reply)
    assert (r.category, r.action, r.transient) == (category, action, transient)
    assert r.rule  # explainability: the deciding rule is named


def test_result_carries_reply_fields() -> None:
    r = mailretry.classify("452 4.2.2 Mailbox full")
    assert (r.code, r.enhanced, r.text) == (452, "4.2.2", "Mailbox full")


def test_unparseable_reply_raises() -> None:
    with pytest.raises(InvalidInputError):
        mailretry.classify("no code here")


def test_user_rule_beats_defaults() -> None:
    clf = Classifier(
        [
            {
                "name": "acme-busy",
                "text": r"acme\s+overload",
                "category": "server_busy_capacity",
                "action": "retry",
            }
        ]
    )
    r = clf.classify("550 5.7.1 ACME   overload, come back later")
    assert (r.category, r.action, r.rule) == ("server_busy_capacity", "retry", "user:acme-busy")
    assert clf.rule_names()[0] == "user:acme-busy"
    # Without the user rule the default rules decide.
    assert mailretry.classify("550 5.7.1 ACME   overload, come back later").rule != "user:acme-busy"


def test_user_rule_destination_scope() -> None:
    clf = Classifier(
        [
            {
                "name": "only-example",
                "code": "4xx",
                "destination": "*.example.com",
                "category": "reputation_throttle",
                "action": "suspend_domain",
            }
        ]
    )
    assert clf.classify("421 hello", "mx.example.com").rule == "user:only-example"
    assert clf.classify("421 hello", "gmail.com").rule != "user:only-example"


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "bad-regex", "text": "(unclosed", "category": "rate_limit", "action": "retry"},
        {"name": "bad-cat", "category": "nope", "action": "retry"},
        {"name": "bad-action", "category": "rate_limit", "action": "explode"},
        {"name": "bad-enhanced", "enhanced": "9.x", "category": "rate_limit", "action": "retry"},
        {"name": "", "category": "rate_limit", "action": "retry"},
        {"name": "extra", "category": "rate_limit", "action": "retry", "colour": "red"},
        {"category": "rate_limit", "action": "retry"},
    ],
)
def test_bad_rules_fail_at_load(rule: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError):
        Classifier([rule])


def test_duplicate_rule_names_rejected() -> None:
    rule = {"name": "twice", "category": "rate_limit", "action": "retry"}
    with pytest.raises(InvalidInputError):
        Classifier([rule, rule])


def test_rules_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[classifier.rules]]\nname = "yahoo-defer"\ntext = "\\\\[TSS04\\\\]"\n'
        'category = "reputation_throttle"\naction = "suspend_domain"\n'
    )
    clf = Classifier.from_toml(path)
    r = clf.classify("421 4.7.0 [TSS04] Messages temporarily deferred")
    assert r.rule == "user:yahoo-defer"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[classifier.rules]\nname=")
    with pytest.raises(InvalidInputError):
        Classifier.from_toml(bad)


def test_classify_many_matches_classify(dev_replies: list[dict[str, str]]) -> None:
    texts = [row["reply"] for row in dev_replies]
    batch = mailretry.classify_many(texts, lenient=True)
    assert len(batch) == len(texts)
    assert batch.ok.all()
    assert not mailretry.classify_many(texts, raise_on_error=False).ok.all()  # some lack a code
    for i in range(0, len(texts), 7):
        one = mailretry.classify(texts[i], lenient=True)
        assert batch.category[i] == one.category
        assert batch.action[i] == one.action
        assert bool(batch.transient[i]) == one.transient
        assert batch.rule[i] == one.rule
        assert int(batch.code[i]) == one.code
        assert batch.enhanced[i] == one.enhanced
        assert batch.text[i] == one.text


def test_classify_many_accepts_numpy_arrays() -> None:
    texts = ["421 4.7.0 Try again later", "550 5.1.1 User unknown — ünïcode"]
    for arr in (np.array(texts), np.array(texts, dtype=object)):
        batch = mailretry.classify_many(arr)
        assert list(batch.code) == [421, 550]
        assert batch.category[1] == "mailbox_unknown"


def test_classify_many_errors() -> None:
    texts = ["421 4.7.0 later", "garbage", "550 5.1.1 unknown user"]
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        mailretry.classify_many(texts)
    batch = mailretry.classify_many(texts, raise_on_error=False)
    assert batch.ok.tolist() == [True, False, True]
    assert set(batch.errors) == {1}
    assert batch.rule[1] == ""
    assert batch.text[1] is None
    assert batch.to_records()[2]["text"] == "unknown user"
    with pytest.raises(InvalidInputError):
        mailretry.classify_many(["421 ok", 42])  # type: ignore[list-item]


def test_dev_corpus_accuracy_floor(dev_replies: list[dict[str, str]]) -> None:
    ev = evaluate(dev_replies)
    assert ev.parse_errors == 0, ev.mistakes[:5]
    assert ev.category_accuracy >= CATEGORY_FLOOR, ev.table()
    assert ev.action_accuracy >= ACTION_FLOOR, ev.table()
    assert ev.transient_accuracy >= TRANSIENT_FLOOR, ev.table()


def test_enhanced_code_without_basic_code_is_classified_and_marked() -> None:
    r = mailretry.classify("5.1.1 there is nobody of that name on this host")
    assert r.basic_code_inferred
    assert (r.code, r.enhanced) == (500, "5.1.1")
    assert (r.category, r.transient) == ("mailbox_unknown", False)
    plain = mailretry.classify("550 5.1.1 there is nobody of that name on this host")
    assert not plain.basic_code_inferred
    batch = mailretry.classify_many(["4.2.2 storage for this user is used up", "421 4.3.2 down"])
    assert batch.basic_code_inferred.tolist() == [True, False]
    assert batch.to_records()[0]["basic_code_inferred"] is True
    with pytest.raises(InvalidInputError):
        mailretry.classify("no code anywhere in this line")


def test_engine_report_stays_strict_about_the_basic_code() -> None:
    engine = mailretry.Engine(seed=1)
    engine.submit(1, "example.org", 1_000.0)
    (lease,) = engine.take_ready(1_000.0, limit=1)
    with pytest.raises(InvalidInputError):
        engine.report(lease.msg_id, 1_000.0, "4.7.0 come back later")


def test_2xx_is_delivered() -> None:
    r = mailretry.classify("250 2.0.0 Ok: queued as 4Bx1yz")
    assert (r.category, r.transient) == ("delivered", False)
    assert "delivered" in mailretry.CATEGORIES
    with pytest.raises(InvalidInputError, match="delivered"):
        Classifier(
            [{"name": "x", "text": "ok", "category": "delivered", "action": "retry"}]
        ).classify("250 ok")


@pytest.mark.parametrize(
    ("reply", "category"),
    [
        # Postfix anvil's per-client message rate limit.
        ("450 4.7.1 Error: too much mail from 198.51.100.23", "rate_limit"),
        ("450 4.7.1 Error: too much mail from [2001:db8::17]", "rate_limit"),
        # A provider's cap on simultaneous connections from one IP.
        (
            "421 4.7.0 Our system has detected too many connections from your IP; "
            "please reconnect later",
            "too_many_connections",
        ),
        # Greylisting behind a gateway that words it as a policy deferral.
        (
            "451 4.7.1 Greylisting in action, try again after a short wait - gw.example.net",
            "greylisting",
        ),
        ("451 Internal resource temporarily unavailable - greylisted sender", "greylisting"),
    ],
)
def test_misread_wordings(reply: str, category: str) -> None:
    assert mailretry.classify(reply).category == category


def test_corpus_split_is_by_source_and_stable() -> None:
    from mailretry.evaluate import corpus_split, select_split

    assert corpus_split("a source") == corpus_split("a source")
    rows = [
        {"reply": "550 x", "category": "c", "action": "bounce", "source": f"s{i}"}
        for i in range(200)
    ]
    tune, validation = select_split(rows, "tune"), select_split(rows, "validation")
    assert len(tune) + len(validation) == 200
    assert 30 <= len(validation) <= 90
    with pytest.raises(InvalidInputError, match="source"):
        select_split([{"reply": "550 x", "category": "c", "action": "bounce"}], "tune")


def test_dev_corpus_splits_are_scored(dev_replies: list[dict[str, str]]) -> None:
    from mailretry.evaluate import select_split

    tune = evaluate(dev_replies, split="tune")
    validation = evaluate(dev_replies, split="validation")
    assert tune.total + validation.total == len(dev_replies)
    assert len(select_split(dev_replies, "validation")) == validation.total
    assert tune.per_source and validation.per_source
    assert not set(tune.per_source) & set(validation.per_source)
    floors = VALIDATION_FLOORS
    assert validation.category_accuracy >= floors[0], validation.table(sources=0)
    assert validation.action_accuracy >= floors[1], validation.table(sources=0)
    assert validation.transient_accuracy >= floors[2], validation.table(sources=0)


def test_log_wrapped_replies_are_unwrapped() -> None:
    r = mailretry.classify("Diagnostic-Code: smtp; 552 5.2.2 storage for this mailbox is used up")
    assert (r.code, r.category, r.basic_code_inferred) == (552, "mailbox_full", False)
    r = mailretry.classify(
        "host mx.example.net[192.0.2.9] said: 550 5.1.1 <a@b.example>: Recipient address "
        "rejected: User unknown in local recipient table (in reply to RCPT TO command)"
    )
    assert (r.code, r.category) == (550, "mailbox_unknown")
