"""When a failed delivery is tried again: increasing delays, each shortened by up to a fifth at
random so that receivers coming back up are not hit by every sender at the same instant.

Standard spans more than a day even with the most jitter (a receiver down overnight still gets its
events); short is reference/000's "5 attempts over 10 minutes", never longer.
"""

from __future__ import annotations

import random
from datetime import timedelta

from webhooks.models import RetrySchedule

MINUTE, HOUR = 60, 3600
# Delay after attempt n (n = 1, 2, ...); the length of the list + 1 is the number of attempts.
DELAYS_SECONDS: dict[str, tuple[int, ...]] = {
    RetrySchedule.STANDARD: (5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR),
    RetrySchedule.SHORT: (40, 80, 160, 320),
}
JITTER = 0.2


def attempts_allowed(schedule: str) -> int:
    return len(DELAYS_SECONDS[schedule]) + 1


def delay_after(schedule: str, attempt: int, *, rng: random.Random | None = None) -> timedelta | None:
    """How long to wait after failed attempt number `attempt` (1-based); None when it was the last."""
    delays = DELAYS_SECONDS[schedule]
    if attempt > len(delays):
        return None
    factor = 1 - JITTER * (rng or random).random()  # spreading retries, not secrecy
    return timedelta(seconds=delays[attempt - 1] * factor)
