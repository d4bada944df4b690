"""Engine behaviour the real-server runs depend on (issue 14 item 1)."""

from __future__ import annotations

import mailretry

T0 = 1_700_000_000.0
REFUSED = "421 4.7.0 mx.example Error: too many connections from 192.0.2.1"


def test_one_concurrency_cut_per_cohort_of_too_many_connections() -> None:
    # Five attempts leave together; the server allows two connections, so three
    # are refused at once. Those three replies are one piece of evidence (all
    # were sent before the first cut), as a cohort of rate-limit replies is:
    # the limit is cut once, not once per reply.
    engine = mailretry.Engine(
        {"destination_defaults": {"initial_concurrency": 5, "max_concurrency": 10}}, seed=1
    )
    for i in range(5):
        engine.submit(i, "example.com", T0)
    leases = engine.take_ready(T0, 10)
    assert len(leases) == 5
    engine.report(leases[0], T0 + 1, REFUSED)
    after_first = engine.destination("example.com")["concurrency_limit"]
    assert after_first < 5
    engine.report(leases[1], T0 + 1, REFUSED)
    engine.report(leases[2], T0 + 1, REFUSED)
    engine.report(leases[3], T0 + 1, "250 2.0.0 ok")
    engine.report(leases[4], T0 + 1, "250 2.0.0 ok")
    assert engine.destination("example.com")["concurrency_limit"] == after_first
