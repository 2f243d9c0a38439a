"""X's reconnection rules (streaming.sources.backoff): the delays the policy computes."""

from __future__ import annotations

from streaming.sources.backoff import Failure, ReconnectPolicy


def delays(policy: ReconnectPolicy, failure: Failure, n: int) -> list[float]:
    return [policy.delay(failure) for _ in range(n)]


def test_network_errors_reconnect_at_once_then_back_off_linearly_to_16_s() -> None:
    got = delays(ReconnectPolicy(), Failure.NETWORK, 70)
    assert got[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert got[64] == 16.0 and got[63] == 15.75
    assert set(got[64:]) == {16.0}


def test_http_errors_back_off_exponentially_from_5_s_to_320_s() -> None:
    assert delays(ReconnectPolicy(), Failure.HTTP, 9) == [5, 10, 20, 40, 80, 160, 320, 320, 320]


def test_429_backs_off_from_60_s_doubling() -> None:
    assert delays(ReconnectPolicy(), Failure.RATE_LIMIT, 6) == [60, 120, 240, 480, 960, 960]


def test_a_successful_connection_resets_every_counter() -> None:
    policy = ReconnectPolicy()
    delays(policy, Failure.NETWORK, 3)
    delays(policy, Failure.HTTP, 3)
    delays(policy, Failure.RATE_LIMIT, 2)
    policy.connected()
    assert [policy.delay(Failure.NETWORK), policy.delay(Failure.HTTP),
            policy.delay(Failure.RATE_LIMIT)] == [0.0, 5.0, 60.0]


def test_kinds_count_separately() -> None:
    policy = ReconnectPolicy()
    assert [policy.delay(f) for f in (Failure.NETWORK, Failure.HTTP, Failure.NETWORK,
                                      Failure.RATE_LIMIT, Failure.HTTP)] == [0.0, 5, 0.25, 60, 10]
