"""Ledger benchmark: posting throughput, and balance-read latency as the ledger grows.

Run from the repository root (PostgreSQL is what the figures are for):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/ledger_bench.py
    .venv/bin/python bench/ledger_bench.py --entries 100000 --postings 500   # quick run

Nothing touches the configured database's data: the run creates a throwaway database with
Django's test-database machinery (a uniquely named one, so it never clobbers a test run's
database) and drops it at the end, even on failure. Without DATABASE_URL it runs on SQLite
and says so; those figures do not answer the question, which is about PostgreSQL.

1. Postings per second. Times `billing.ledger.ledger_post` calls, each a two-line top-up moving
   a small amount from the Stripe clearing account to an org's available account under a fresh
   idempotency key: first from one thread, then the same total split across `--threads`
   threads, each posting to its own org. Two baselines are timed the same way in the same run:
   `SELECT 1` inside `transaction.atomic()` (the floor of any transaction: BEGIN, one round
   trip, COMMIT) and a one-row INSERT into a bare table (the floor of a committed write, which
   waits for the WAL flush). "x SELECT" and "x INSERT" say how many of those one call costs;
   "stmts" (statements per call, each a round trip) explains much of it. Postings to different
   orgs share only the system account on their other side, which no posting locks (issue 19):
   compare the threaded ledger_post row with the threaded floors (on a machine with few cores,
   CPU caps both).

2. Balance reads as entries grow. One org's available account is filled with 0, 10k, 100k and
   1,000,000 entries (up to `--entries`), bulk-loaded without `ledger_post` (balanced
   two-entry transactions against the promotional account, `balance_after_micros` computed
   as a running sum, the cached balances set to the loaded totals). At each size it times
   `billing.selectors.balance_of(org)` (reads the cached account rows) and, as the baseline
   that does grow, a naive `SUM(amount_micros)` over the account's entries. balance_of's
   latency should be flat down its column; the SUM's grows with the entries. At every size
   the run checks that balance_of's available credit equals the SUM, and at the end it runs
   the ledger's invariant check (`billing.invariants.ledger_violations`) over everything.

3. At fleet scale (issue 19). `--orgs` organizations (1,000) with their accounts, bulk-made. First,
   usage postings (available -> revenue, the metering charge's shape, each to a random org) from
   `--processes` processes at once, next to the same processes' one-row INSERT floor measured
   right before: `--posting-batch` (100) postings per `ledger_post_many` call and database
   transaction, as a metering tick posts (usage postings come from ticks), then one `ledger_post`
   and transaction each. Postings of different orgs share only the revenue account, which no
   posting locks. Then a metering tick over `--meters` running meters (10,000, spread over the
   orgs): `billing.metering.usage_charge_running`, TICK_BATCH meters per database transaction; a
   second tick at the same instant must post nothing. The run ends with one JSON line:
   postings_per_s_across_orgs (batched), single_postings_per_s_across_orgs, insert_floor_per_s
   (same processes, same run), tick_10k_seconds (scaled to 10,000 meters if --meters differs) and
   what they were measured with.

Latencies are wall-clock per call from this client (time.perf_counter), so they include the
Python/ORM work and the round trip to the server, which is what a request pays. p99 over few
samples (the SUM at large sizes is sampled under a time budget; `n` says how many) is rough.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import django

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gpucloud.settings")
django.setup()  # the bench reads DATABASE_URL from the environment only: Django can load now

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.test.utils import (
    CaptureQueriesContext,
    setup_test_environment,
    teardown_test_environment,
)
from django.utils import timezone

from accounts.models import Organization
from accounts.services import user_create
from billing.invariants import ledger_violations
from billing.ledger import Line, PostingRequest, ledger_post, ledger_post_many, org_accounts, system_account
from billing.metering import TICK_BATCH, usage_charge_running
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Service,
    TransactionKind,
    UsageMeter,
)
from billing.selectors import balance_of

ENTRY_SIZES = (0, 10_000, 100_000, 1_000_000)
SUM_BUDGET_S = 8.0  # wall-clock budget for the naive SUM at one size; at least MIN_SAMPLES calls
MIN_SAMPLES = 10
WARMUP_CALLS = 20


# --- Measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Per-call latencies in seconds and the wall-clock time they took together."""

    samples: Sequence[float]
    wall_s: float

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        ordered = sorted(self.samples)
        rank = max(1, round(pct / 100 * len(ordered)))
        return ordered[min(rank, len(ordered)) - 1] * 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)


def time_calls(call: Callable[[int], object], count: int, budget_s: float | None = None) -> Timing:
    """Call `call(i)` for i in range(count), timing each; stop early once past `budget_s`."""
    samples: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - t0)
        if budget_s is not None and len(samples) >= MIN_SAMPLES and time.perf_counter() - started > budget_s:
            break
    return Timing(samples, time.perf_counter() - started)


def time_threads(workers: Sequence[Callable[[], list[float]]]) -> Timing:
    """Run each worker in its own thread, all released together; wall time runs from release to the last end.

    A worker does its own warm-up (opening its connection) before the shared start, and closes
    its database connection when done.
    """

    start = threading.Barrier(len(workers) + 1)
    results: list[list[float]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def run(index: int, worker: Callable[[], list[float]]) -> None:
        try:
            results[index] = worker_with_barrier(worker, start)
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, w), name=f"bench-{i}") for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed while warming up; its error is raised below
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return Timing([s for samples in results for s in samples], wall)


def worker_with_barrier(worker: Callable[[], list[float]], start: threading.Barrier) -> list[float]:
    """Warm up (first query opens this thread's connection), wait for the start, then work."""

    connection.ensure_connection()
    start.wait()
    return worker()


# --- The throwaway database ------------------------------------------------------------------


@contextmanager
def throwaway_database() -> Iterator[None]:
    """Create a fresh, uniquely named test database, migrate it, and drop it afterwards."""

    test_settings = connection.settings_dict.setdefault("TEST", {})
    scratch = tempfile.TemporaryDirectory(prefix="ledger-bench-")
    if connection.vendor == "sqlite":
        # A file, not the shared in-memory database: threads get real concurrent connections.
        test_settings["NAME"] = str(Path(scratch.name) / "ledger_bench.sqlite3")
    else:
        test_settings["NAME"] = f"ledger_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    old_name = connection.settings_dict["NAME"]
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
        try:
            yield
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=False)
    finally:
        scratch.cleanup()


# --- Fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgAccount:
    org: Organization
    available: LedgerAccount


def new_org(label: str) -> OrgAccount:

    _, org = user_create(email=f"{label}-{uuid.uuid4().hex[:8]}@bench.example", password=None)
    available, _ = org_accounts(org)
    return OrgAccount(org, available)


# --- 1. Postings per second ------------------------------------------------------------------


def post_once(target: OrgAccount, source: LedgerAccount, key: str, amount: int) -> None:

    posting = ledger_post(
        idempotency_key=key,
        kind=TransactionKind.TOPUP,
        lines=[Line(source, -amount), Line(target.available, amount)],
        description="ledger benchmark posting",
        org=target.org,
    )
    assert posting.created, f"idempotency key {key} was reused"


FLOOR_TABLE = "ledger_bench_floor"


def select_one(_: int) -> None:
    """The floor of any transaction: BEGIN, one round trip, COMMIT (nothing to flush)."""

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def insert_one(i: int) -> None:
    """The floor of a write: one row into a bare table, committed (the commit waits for the WAL flush)."""

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {FLOOR_TABLE} (n) VALUES (%s)", [i])  # noqa: S608 - a constant name


def create_floor_table() -> None:

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {FLOOR_TABLE} (n integer NOT NULL)")


def posting_call(target: OrgAccount, source: LedgerAccount, prefix: str) -> Callable[[int], object]:
    """A posting call for time_calls; every call gets a fresh idempotency key, warm-up calls included."""
    rng = random.Random(prefix)  # noqa: S311 - amounts for a benchmark, not secrets
    serial = itertools.count()
    return lambda _: post_once(target, source, f"{prefix}-{next(serial)}", rng.randint(1, 1_000_000))


def statements_per_call(call: Callable[[int], object]) -> int:
    """How many statements one call sends, BEGIN, SAVEPOINT and COMMIT included (each is a round trip)."""

    with CaptureQueriesContext(connection) as captured:
        call(0)
    return len(captured.captured_queries)


@dataclass(frozen=True)
class PostingRow:
    label: str
    statements: int  # per call
    timing: Timing


def bench_postings(postings: int, threads: int) -> list[PostingRow]:

    create_floor_table()
    source = system_account(AccountKind.STRIPE_CLEARING)
    single = new_org("single")
    post_single = posting_call(single, source, "single")
    kinds: list[tuple[str, Callable[[int], object]]] = [
        ("SELECT 1 in atomic() (floor)", select_one),
        ("INSERT 1 row in atomic() (floor)", insert_one),
        ("ledger_post", post_single),
    ]
    statements = {label: statements_per_call(call) for label, call in kinds}
    for _, call in kinds:
        time_calls(call, WARMUP_CALLS)
    rows = [PostingRow(f"{label}, 1 thread", statements[label], time_calls(call, postings)) for label, call in kinds]
    per_thread = max(1, postings // threads)
    orgs = [new_org(f"thread{n}") for n in range(threads)]
    thread_calls: dict[str, list[Callable[[int], object]]] = {label: [call] * threads for label, call in kinds[:2]}
    thread_calls["ledger_post"] = [posting_call(org, source, f"thread{n}") for n, org in enumerate(orgs)]
    for label, calls in thread_calls.items():
        timing = time_threads([worker(call, per_thread) for call in calls])
        rows.append(PostingRow(f"{label}, {threads} threads", statements[label], timing))
    return rows


def worker(call: Callable[[int], object], count: int) -> Callable[[], list[float]]:
    return lambda: list(time_calls(call, count).samples)


def print_postings(rows: list[PostingRow]) -> None:
    select_p50, insert_p50 = rows[0].timing.p50_ms, rows[1].timing.p50_ms
    print("\n1. Postings (ledger_post threads each post to their own org; the system account they share is not locked)")
    print(
        f"{'what':<44} | {'stmts':>5} | {'calls':>6} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} | "
        f"{'x SELECT':>8} | {'x INSERT':>8}"
    )
    print("-" * 117)
    for row in rows:
        timing = row.timing
        print(
            f"{row.label:<44} | {row.statements:>5} | {timing.count:>6} | {timing.per_second:>10,.0f} | "
            f"{timing.p50_ms:>7.3f} | {timing.p99_ms:>7.3f} | "
            f"{_ratio(timing.p50_ms, select_p50):>8} | {_ratio(timing.p50_ms, insert_p50):>8}"
        )
    print("stmts: statements per call, BEGIN/SAVEPOINT/COMMIT included (each one is a round trip).")
    print("x SELECT / x INSERT: p50 latency relative to the 1-thread floors (a minimal transaction / committed write).")


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}" if base else "n/a"


# --- 2. Balance reads as entries grow ----------------------------------------------------


@dataclass
class Loader:
    """Appends balanced two-entry transactions (org available +a, source -a) straight to the tables.

    PostgreSQL gets COPY (a million transactions in well under a minute); other databases get
    bulk_create, which costs roughly ten times as much per row in Python.
    """

    target: OrgAccount
    source: LedgerAccount
    batch_size: int
    rng: random.Random
    loaded: int = 0
    available_total: int = 0

    def load_until(self, size: int) -> float:
        """Load entries until the org account has `size`; return the seconds it took."""

        started = time.perf_counter()
        load_batch = self._copy_batch if connection.vendor == "postgresql" else self._bulk_create_batch
        while self.loaded < size:
            count = min(self.batch_size, size - self.loaded)
            with transaction.atomic():
                load_batch(count)
            self.loaded += count
        self._store_cached_balances()
        analyze()
        return time.perf_counter() - started

    def _next_amounts(self, count: int) -> list[tuple[int, int]]:
        """(amount, available balance after) for the next `count` transactions (the source, a system
        account, keeps no running balance)."""
        rows = []
        for _ in range(count):
            amount = self.rng.randint(1, 1_000_000)
            self.available_total += amount
            rows.append((amount, self.available_total))
        return rows

    def _bulk_create_batch(self, count: int) -> None:

        now = timezone.now()
        txns = LedgerTransaction.objects.bulk_create(
            LedgerTransaction(
                idempotency_key=f"bulk-{self.loaded + i}",
                kind=TransactionKind.ADJUSTMENT,
                org=self.target.org,
                description="ledger benchmark bulk load",
                reason="benchmark",
                created_at=now,
            )
            for i in range(count)
        )
        entries = []
        for txn, (amount, available_after) in zip(txns, self._next_amounts(count), strict=True):
            entries.append(
                LedgerEntry(
                    transaction=txn,
                    account=self.target.available,
                    amount_micros=amount,
                    balance_after_micros=available_after,
                    created_at=now,
                )
            )
            entries.append(
                LedgerEntry(
                    transaction=txn,
                    account=self.source,
                    amount_micros=-amount,
                    balance_after_micros=None,  # a system account keeps no running balance
                    created_at=now,
                )
            )
        LedgerEntry.objects.bulk_create(entries)

    def _copy_batch(self, count: int) -> None:

        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                [
                    table_of("LedgerTransaction"),
                    count,
                ],
            )
            txn_ids = [row[0] for row in cursor.fetchall()]
            self._copy_transactions(cursor, txn_ids, now)
            self._copy_entries(cursor, txn_ids, now)

    def _copy_transactions(self, cursor: Any, txn_ids: list[int], now: datetime) -> None:

        columns = "id idempotency_key kind org service description reason overdraft created_at metadata"
        with cursor.copy(copy_sql("LedgerTransaction", columns)) as copy:
            for i, txn_id in enumerate(txn_ids):
                key, kind = f"bulk-{self.loaded + i}", TransactionKind.ADJUSTMENT.value
                org_id, description = self.target.org.pk, "ledger benchmark bulk load"
                copy.write_row((txn_id, key, kind, org_id, "", description, "benchmark", False, now, "{}"))

    def _copy_entries(self, cursor: Any, txn_ids: list[int], now: datetime) -> None:
        columns = "transaction account amount_micros balance_after_micros created_at"
        with cursor.copy(copy_sql("LedgerEntry", columns)) as copy:
            for txn_id, (amount, available_after) in zip(txn_ids, self._next_amounts(len(txn_ids)), strict=True):
                copy.write_row((txn_id, self.target.available.pk, amount, available_after, now))
                copy.write_row((txn_id, self.source.pk, -amount, None, now))  # a system account: no balance

    def _store_cached_balances(self) -> None:

        LedgerAccount.objects.filter(pk=self.target.available.pk).update(balance_micros=self.available_total)


def table_of(model_name: str) -> str:

    return str(apps.get_model("billing", model_name)._meta.db_table)


def copy_sql(model_name: str, fields: str) -> str:
    """`COPY table (columns) FROM STDIN` for the billing model's named fields."""

    columns = {field.name: field.column for field in apps.get_model("billing", model_name)._meta.concrete_fields}
    quoted = ", ".join(connection.ops.quote_name(columns[name]) for name in fields.split())
    return f"COPY {connection.ops.quote_name(table_of(model_name))} ({quoted}) FROM STDIN"


def analyze() -> None:
    """Refresh the planner's statistics after a bulk load, as autovacuum soon would."""

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def naive_sum(account: LedgerAccount) -> int:

    total = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount_micros"))["total"]
    return int(total or 0)


@dataclass(frozen=True)
class ReadRow:
    entries: int
    load_s: float
    balance: Timing
    summed: Timing


def bench_reads(max_entries: int, reads: int, batch_size: int) -> list[ReadRow]:

    target = new_org("reader")
    loader = Loader(target, system_account(AccountKind.PROMOTIONAL), batch_size, random.Random(42))  # noqa: S311
    sizes = sorted({size for size in ENTRY_SIZES if size <= max_entries} | {max_entries})
    rows = []
    for size in sizes:
        load_s = loader.load_until(size)
        time_calls(lambda _: balance_of(target.org), WARMUP_CALLS)
        balance = time_calls(lambda _: balance_of(target.org), reads)
        summed = time_calls(lambda _: naive_sum(target.available), reads, budget_s=SUM_BUDGET_S)
        check_balance(target, size)
        rows.append(ReadRow(size, load_s, balance, summed))
        print(f"   {size:>9,} entries loaded in {load_s:5.1f} s, measured", flush=True)
    return rows


def check_balance(target: OrgAccount, size: int) -> None:

    cached = balance_of(target.org).available_micros
    summed = naive_sum(target.available)
    if cached != summed:
        raise SystemExit(f"MISMATCH at {size} entries: balance_of says {cached}, SUM(entries) says {summed}")


def print_reads(rows: list[ReadRow]) -> None:
    print("\n2. Balance read latency (one org's available account)")
    print(f"{'entries':>9} | {'balance_of p50/p99 (ms)':>23} | {'naive SUM p50/p99 (ms)':>22} | {'n balance/SUM':>13}")
    print("-" * 77)
    for row in rows:
        bal = f"{row.balance.p50_ms:.3f} / {row.balance.p99_ms:.3f}"
        agg = f"{row.summed.p50_ms:.3f} / {row.summed.p99_ms:.3f}"
        print(f"{row.entries:>9,} | {bal:>23} | {agg:>22} | {f'{row.balance.count}/{row.summed.count}':>13}")
    first, last = rows[0], rows[-1]
    print(
        f"From {first.entries:,} to {last.entries:,} entries: balance_of p50 x{_growth(first.balance, last.balance)}, "
        f"naive SUM p50 x{_growth(first.summed, last.summed)}."
    )
    print("Correctness: at every size balance_of(org).available_micros == SUM(amount_micros) of its entries.")


def _growth(before: Timing, after: Timing) -> str:
    return f"{after.p50_ms / before.p50_ms:.2f}" if before.p50_ms else "n/a"


def check_invariants() -> None:

    started = time.perf_counter()
    violations = ledger_violations()
    elapsed = time.perf_counter() - started
    if violations:
        raise SystemExit("Ledger invariants violated:\n" + "\n".join(violations[:20]))
    print(f"Ledger invariants (billing.invariants.ledger_violations over all rows): none violated ({elapsed:.1f} s).")


# --- 3. At fleet scale ----------------------------------------------------------------------


@dataclass(frozen=True)
class FleetFigures:
    orgs: int
    processes: int
    postings: int
    batch: int  # postings per ledger_post_many call (and database transaction)
    postings_per_s: float  # batched, as metering posts
    single_postings_per_s: float  # one ledger_post (transaction) each
    insert_floor_per_s: float
    meters: int
    tick_seconds: float
    second_tick_seconds: float

    @property
    def tick_10k_seconds(self) -> float:
        return self.tick_seconds * 10_000 / self.meters


def bulk_orgs(count: int) -> list[str]:
    """`count` organizations with their available and held accounts, made in bulk (no users: the
    ledger does not need them)."""
    orgs = Organization.objects.bulk_create([Organization(name=f"fleet org {n}") for n in range(count)])
    LedgerAccount.objects.bulk_create(
        [LedgerAccount(org=org, kind=kind) for org in orgs for kind in (AccountKind.AVAILABLE, AccountKind.HELD)]
    )
    system_account(AccountKind.REVENUE)  # exists before the first posting, as in any running platform
    return [org.pk for org in orgs]


def post_usage_across(org_ids: list[str], batch: int, count: int, seed: int) -> None:
    """`count` usage postings, each to a random one of the orgs (a process's share of the run):
    one ledger_post each when `batch` is 1, else ledger_post_many of `batch` at a time (how a
    metering tick posts)."""
    rng = random.Random(seed)  # noqa: S311 - a benchmark's choice of org, not a secret
    available = dict(
        LedgerAccount.objects.filter(kind=AccountKind.AVAILABLE, org_id__in=org_ids).values_list("org_id", "pk")
    )
    accounts = {a.pk: a for a in LedgerAccount.objects.filter(pk__in=available.values())}
    orgs = Organization.objects.in_bulk(org_ids)
    revenue = system_account(AccountKind.REVENUE)

    def usage(n: int) -> PostingRequest:
        org_id, amount = rng.choice(org_ids), rng.randint(1, 10_000)
        return PostingRequest(
            idempotency_key=f"fleet:{batch}:{seed}:{n}", kind=TransactionKind.USAGE, org=orgs[org_id],
            service=Service.MODEL, description="fleet benchmark usage", allow_overdraft=True,
            lines=[Line(accounts[available[org_id]], -amount), Line(revenue, amount)],
        )  # fmt: skip

    for first in range(0, count, batch):
        requests = [usage(n) for n in range(first, min(first + batch, count))]
        if batch == 1:
            ledger_post(**vars(requests[0]))
        else:
            ledger_post_many(requests)


def insert_floor(count: int, seed: int) -> None:
    for n in range(count):
        insert_one(seed * count + n)


def _in_process(work: Callable[..., None], args: tuple[Any, ...], start: Any) -> None:
    connection.close()  # the parent's connection is not this process's: open a fresh one
    connection.ensure_connection()
    start.wait()
    work(*args)
    connection.close()


def rate_in_processes(processes: int, work: Callable[..., None], per_process: int, *args: Any) -> float:
    """Calls per second of `work` run in `processes` forked processes at once (each with its own
    database connection, released together; timed from the release to the last one's end)."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes + 1)
    connection.close()  # a forked child must not share the parent's socket
    children = [
        context.Process(target=_in_process, args=(work, (*args, per_process, seed), start)) for seed in range(processes)
    ]
    for child in children:
        child.start()
    start.wait()
    began = time.perf_counter()
    for child in children:
        child.join()
    elapsed = time.perf_counter() - began
    if any(child.exitcode != 0 for child in children):
        raise SystemExit(f"a benchmark process failed: exit codes {[c.exitcode for c in children]}")
    return processes * per_process / elapsed


def _usage_work(org_ids: list[str], batch: int, count: int, seed: int) -> None:
    post_usage_across(org_ids, batch, count, seed)


def _insert_work(count: int, seed: int) -> None:
    insert_floor(count, seed)


def start_meters(org_ids: list[str], count: int, started_at: datetime) -> None:
    UsageMeter.objects.bulk_create(
        [
            UsageMeter(
                meter_key=f"fleet-meter-{n}",
                org_id=org_ids[n % len(org_ids)],
                service=Service.MODEL,
                description="fleet benchmark instance",
                hourly_price_micros=2_000_000 + n % 7 * 100_000,
                started_at=started_at,
            )
            for n in range(count)
        ],
        batch_size=2000,
    )


def bench_fleet(orgs: int, processes: int, postings: int, batch: int, meters: int) -> FleetFigures:
    org_ids = bulk_orgs(orgs)
    per_process = max(1, postings // processes)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {FLOOR_TABLE}")
    floor = rate_in_processes(processes, _insert_work, per_process)
    single = rate_in_processes(processes, _usage_work, per_process, org_ids, 1)
    rate = rate_in_processes(processes, _usage_work, per_process, org_ids, batch)
    now = timezone.now()
    start_meters(org_ids, meters, now - timedelta(minutes=5))
    analyze()
    began = time.perf_counter()
    charged = usage_charge_running(now=now)
    tick = time.perf_counter() - began
    if len(charged) != min(orgs, meters):
        raise SystemExit(f"the tick charged {len(charged)} orgs, expected {min(orgs, meters)}")
    began = time.perf_counter()
    again = usage_charge_running(now=now)
    second = time.perf_counter() - began
    if again:
        raise SystemExit(f"a second tick at the same instant charged {len(again)} orgs again")
    return FleetFigures(orgs, processes, per_process * processes, batch, rate, single, floor, meters, tick, second)


def print_fleet(figures: FleetFigures) -> None:
    print(f"\n3. At fleet scale: {figures.orgs:,} organizations")
    print(f"{'what':<58} | {'figure':>12} | {'floor (same run)':>16} | {'ratio':>6}")
    print("-" * 102)
    for label, rate in (
        (f"usage postings/s, {figures.batch} a transaction (as metering)", figures.postings_per_s),
        ("usage postings/s, one ledger_post (transaction) each", figures.single_postings_per_s),
    ):
        print(
            f"{f'{label}':<58} | {rate:>12,.0f} | "
            f"{figures.insert_floor_per_s:>16,.0f} | {rate / figures.insert_floor_per_s:>6.2f}"
        )
    print(
        f"{f'metering tick, {figures.meters:,} running meters (s)':<58} | {figures.tick_seconds:>12.2f} | "
        f"{'goal <= 10 s':>16} | {figures.meters / figures.tick_seconds:>6,.0f}/s"
    )
    print(
        f"{'the same tick again, at the same instant (s): posts nothing':<58} | {figures.second_tick_seconds:>12.2f} |"
    )
    floor = f"floor: one-row INSERT transactions/s from the same {figures.processes} processes"
    print(f"{floor}; tick: {TICK_BATCH} meters a transaction.")


# --- Context and entry point ----------------------------------------------------------------


def print_context() -> None:

    print("Ledger benchmark")
    print(f"machine : {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"django  : {django.get_version()}, DEBUG={_debug()}")
    print(f"database: {connection.vendor} {server_version()} ({connection.settings_dict['NAME']}, throwaway)")
    if connection.vendor == "postgresql":
        print(f"server  : {postgres_settings()} (same machine as this client unless DATABASE_URL says otherwise)")
    else:
        print("WARNING : DATABASE_URL is not set, so these figures are for SQLite; the issue asks for PostgreSQL.")


def _debug() -> bool:

    return bool(settings.DEBUG)


def server_version() -> str:

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        return str(cursor.fetchone()[0]).split(" on ")[0]


def postgres_settings() -> str:

    shown = []
    with connection.cursor() as cursor:
        for name in ("synchronous_commit", "fsync", "shared_buffers"):
            cursor.execute(f"SHOW {name}")
            shown.append(f"{name}={cursor.fetchone()[0]}")
    return ", ".join(shown)


def parse_args(argv: Sequence[str] | None, postgres: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--entries", type=int, default=1_000_000 if postgres else 100_000, help="largest ledger size to read from"
    )
    parser.add_argument("--postings", type=int, default=2000, help="ledger_post calls per posting measurement")
    parser.add_argument("--threads", type=int, default=4, help="threads for the concurrent posting measurement")
    parser.add_argument("--reads", type=int, default=2000, help="balance_of calls per ledger size")
    parser.add_argument("--batch", type=int, default=5000, help="transactions per bulk-load batch")
    parser.add_argument("--orgs", type=int, default=1000, help="organizations for the fleet-scale figures")
    parser.add_argument("--processes", type=int, default=4, help="processes posting at once across the orgs")
    parser.add_argument("--fleet-postings", type=int, default=8000, help="usage postings across the orgs, in all")
    parser.add_argument("--meters", type=int, default=10_000, help="running meters the metering tick charges")
    parser.add_argument("--posting-batch", type=int, default=100, help="usage postings per ledger_post_many call")
    parser.add_argument(
        "--quick", action="store_true",
        help="short sections 1 and 2 (--postings 300 --entries 10000 --reads 200); section 3 as asked",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.postings, args.entries, args.reads = 300, min(args.entries, 10_000), 200
    if min(args.postings, args.threads, args.reads, args.batch) < 1 or args.entries < 0:
        parser.error("--postings, --threads, --reads and --batch must be positive, --entries not negative")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, postgres=bool(os.environ.get("DATABASE_URL", "").startswith("postgres")))

    django.setup()

    setup_test_environment(debug=False)  # no query log; emails go to memory
    started = time.perf_counter()
    try:
        with throwaway_database():
            print_context()
            print(f"\nPosting {args.postings} times from one thread, then split across {args.threads} ...", flush=True)
            print_postings(bench_postings(args.postings, args.threads))
            print(f"\nLoading up to {args.entries:,} entries in batches of {args.batch}, reading at each size ...")
            print_reads(bench_reads(args.entries, args.reads, args.batch))
            print(f"\nFleet scale: {args.orgs:,} orgs, {args.fleet_postings:,} postings from {args.processes} "
                  f"processes, a tick over {args.meters:,} meters ...", flush=True)  # fmt: skip
            fleet = bench_fleet(args.orgs, args.processes, args.fleet_postings, args.posting_batch, args.meters)
            print_fleet(fleet)
            check_invariants()
    finally:
        teardown_test_environment()
    print(f"\nTotal run time {time.perf_counter() - started:.0f} s; the throwaway database was dropped.")
    figures = {
        "postings_per_s_across_orgs": round(fleet.postings_per_s),
        "postings_batch": fleet.batch,
        "single_postings_per_s_across_orgs": round(fleet.single_postings_per_s),
        "insert_floor_per_s": round(fleet.insert_floor_per_s),
        "tick_10k_seconds": round(fleet.tick_10k_seconds, 2),
        "tick_meters": fleet.meters,
        "orgs": fleet.orgs,
        "processes": fleet.processes,
        "tick_batch": TICK_BATCH,
        "database": connection.vendor,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
