"""retry_on_deadlock (gpucloud/core/db.py): when PostgreSQL aborts a transaction to break a deadlock,
the victim's function runs again and both sides finish; other errors and calls inside a caller's
transaction are not retried."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, transaction

from accounts.models import Organization
from gpucloud.core.db import ATTEMPTS, retry_on_deadlock

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="deadlock detection is PostgreSQL's"),
]


def test_the_victim_of_a_real_deadlock_runs_again_and_both_sides_finish() -> None:
    first, second = Organization.objects.create(name="one"), Organization.objects.create(name="two")
    both_hold_one = threading.Barrier(2)
    attempts: dict[str, int] = {"forward": 0, "backward": 0}
    errors: list[str] = []

    def crossing(name: str, order: tuple[Organization, Organization]) -> None:
        @retry_on_deadlock
        def lock_both() -> None:
            attempts[name] += 1
            with transaction.atomic():
                Organization.objects.select_for_update().get(pk=order[0].pk)
                if attempts[name] == 1:
                    both_hold_one.wait(10)  # each holds its first row: the second lock closes the cycle
                Organization.objects.filter(pk=order[1].pk).update(name=f"{order[1].name}+{name}")

        try:
            lock_both()
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=crossing, args=("forward", (first, second))),
               threading.Thread(target=crossing, args=("backward", (second, first)))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # PostgreSQL picked one victim; it ran once more
    assert Organization.objects.get(pk=first.pk).name == "one+backward"
    assert Organization.objects.get(pk=second.pk).name == "two+forward"


class Deadlock(Exception):
    sqlstate = "40P01"  # what psycopg's error carries, and Django's OperationalError has as its cause


def test_other_errors_and_calls_inside_a_transaction_are_not_retried() -> None:
    calls: list[str] = []

    @retry_on_deadlock
    def failing(kind: str) -> None:
        calls.append(kind)
        if kind == "deadlock":
            raise OperationalError("deadlock detected") from Deadlock()
        raise OperationalError("the database is gone")

    with pytest.raises(OperationalError):
        failing("gone")
    assert calls == ["gone"]
    with pytest.raises(OperationalError, match="deadlock"):
        failing("deadlock")
    assert calls.count("deadlock") == ATTEMPTS  # each attempt a victim: it gives up, and says so
    calls.clear()
    with transaction.atomic(), pytest.raises(OperationalError):
        failing("deadlock")  # the caller's transaction is aborted: only the caller can run it again
    assert calls == ["deadlock"]
