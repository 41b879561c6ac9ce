"""Rule 8's arithmetic: immediate first restart, then 10 s doubling to 300 s."""

from __future__ import annotations

import pytest

from podvisor.supervisor.lifecycle.backoff import BackOffPolicy


def test_default_delays_double_from_ten_to_three_hundred() -> None:
    policy = BackOffPolicy()
    assert [policy.delay(n) for n in range(9)] == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_initial_and_maximum_are_adjustable() -> None:
    policy = BackOffPolicy(initial=1, maximum=5)
    assert [policy.delay(n) for n in range(6)] == [0, 1, 2, 4, 5, 5]


def test_a_week_of_crashes_does_not_overflow() -> None:
    assert BackOffPolicy().delay(100_000) == 300


def test_ten_minutes_of_running_resets() -> None:
    policy = BackOffPolicy()
    assert policy.resets(600)
    assert not policy.resets(599.9)


@pytest.mark.parametrize(
    ("initial", "maximum", "reset_after"), [(-1, 10, 600), (20, 10, 600), (1, 10, -1)]
)
def test_nonsense_is_refused(initial: float, maximum: float, reset_after: float) -> None:
    with pytest.raises(ValueError, match="back-off needs"):
        BackOffPolicy(initial, maximum, reset_after)
