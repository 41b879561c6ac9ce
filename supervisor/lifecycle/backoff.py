"""Restart back-off: how long a crashing container waits before its next start.

The rule differs from the kubelet's in one point: the first restart in a row
is immediate (a program that crashed once, perhaps because a peer was not up
yet, deserves a quick second chance). After that the delay starts at
`initial` and doubles up to `maximum`:

    restart in a row:  1   2    3    4    5    6     7     8 ...
    delay (default):   0   10   20   40   80   160   300   300 ...

A container that ran for `reset_after` seconds or longer before it exited
starts again from the beginning (its next restart is immediate), as the
kubelet forgets a back-off after ten minutes of good behaviour.

Pure arithmetic: no clock is read here; the lifecycle core passes the times.
"""

from __future__ import annotations

from podvisor.supervisor.frozen import frozen

# Doubling stops long before this, but a container that crashes for a week
# must not make 2**n overflow a float: cap the exponent.
_MAX_DOUBLINGS = 62


@frozen
class BackOffPolicy:
    """Back-off settings; `initial` and `maximum` come from podvisor.io/ annotations."""

    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.maximum or self.reset_after < 0:
            raise ValueError(f"back-off needs 0 <= initial <= maximum and reset_after >= 0: {self}")

    def delay(self, restarts_in_a_row: int) -> float:
        """Seconds to wait before a restart, given how many came right before it.

        `restarts_in_a_row` is 0 for the first restart after a start (or
        after a reset), 1 for the second, and so on.
        """
        if restarts_in_a_row <= 0:
            return 0.0
        doublings = min(restarts_in_a_row - 1, _MAX_DOUBLINGS)
        return float(min(self.initial * 2**doublings, self.maximum))

    def resets(self, ran_for: float) -> bool:
        """Whether a run this long (seconds) wipes the back-off clean."""
        return ran_for >= self.reset_after
