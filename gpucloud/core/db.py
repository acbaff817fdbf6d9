"""Transactions that PostgreSQL aborted to break a deadlock, run again.

Locks are taken in one order (an owner, then its instances, then the ledger: fleet/workloads.py), so
no two of the platform's own transactions should wait on each other in a cycle. PostgreSQL may
still pick a victim where that order cannot reach (an operator's ad hoc SQL, a lock a future change
takes out of order), and the victim's work is lost although nothing was wrong with it: a DELETE
would answer 500 and a background step would die. `retry_on_deadlock` runs such a function again,
a few times, after a short random pause, when it ran its own transaction (inside a caller's
transaction there is nothing to retry: the caller's whole transaction is aborted).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

# SQLSTATE deadlock_detected and serialization_failure: the transaction did nothing wrong, run it again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
ATTEMPTS = 4

P = ParamSpec("P")
R = TypeVar("R")


def is_retryable(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_on_deadlock(function: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return function(*args, **kwargs)
            except OperationalError as error:
                if attempt == ATTEMPTS or connection.in_atomic_block or not is_retryable(error):
                    raise
                logger.warning("%s: %s; running it again (attempt %d)", function.__qualname__, error, attempt + 1)
                time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311  (jitter, not a secret)
        raise AssertionError("unreachable")

    return run
