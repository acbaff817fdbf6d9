"""Page-speed benchmark: server time of each dashboard page for a large org, against the
framework's floor measured in the same run.

    .venv/bin/python bench/pages_bench.py --quick    # 15 timed requests per page; the last line is one JSON object
    .venv/bin/python bench/pages_bench.py            # 50 timed requests per page
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/pages_bench.py   # on PostgreSQL

Goal (the issue): every page under 100 ms at p95 for an org holding 200 deployments and
100,000 ledger entries.

Where it runs: its own database, never the configured one. With a PostgreSQL DATABASE_URL it
creates `gpucloud_bench_pages` on that server (dropped first if a run left it behind, dropped at
the end unless --keep); without one it runs the embedded topology, SQLite in a temporary
GPUCLOUD_VAR_DIR, and says so. Then `migrate` and `load_catalog`. REDIS_URL is ignored: cache,
channel layer and gateway counters are in-process (bench_environment says why).

What it seeds, in one org (the bench user's named org, made with the services the tests use):
- 200 model deployments (smollm2-135m-instruct on cpu@local): 160 active with 1 or 2 ready
  replicas and an open usage meter per replica, 30 stopped and 10 failed with ended replicas and
  closed meters; a few status events each, and per-replica ready events;
- per-minute request metrics (RequestMinute) over the last 24 hours for 5 active deployments,
  the measured detail page's one among them;
- 20 deployment API keys besides the account key;
- 100,000 ledger transactions, each with one entry on the org's available account (what its
  statement lists: the "100,000 ledger entries") and one on a system account, spread evenly over
  the last --days days (default 60): 98% usage charges (metadata gpu_seconds, like metering's) and
  2% top-ups. They are bulk-inserted in batches, keeping the ledger's invariants (every
  transaction sums to zero, balance_after is each account's running balance, the cached
  balances equal the sums, the daily usage rollup is rebuilt from them); the run checks them with
  billing.invariants before measuring.
  Month-scoped reads (the dashboard's month to date, the billing page's usage report) see only
  this month's share, so the figures depend on the day of the month: the JSON says how many
  usage entries fell in the current month. --month-share F puts a fraction F of the entries
  between the first of this month and now, the month-end worst case whatever the date.

How it measures: django.test.Client in this process (the whole middleware stack, templates and
queries; no HTTP server or network), signed in as the owner with the org chosen in the session.
Per page: 3 warm-up requests, then N timed ones (wall clock around client.get), in N rounds that
visit every page in turn (so a burst of other load hits all pages alike); p50, p95, max,
and the p50 of this thread's CPU time (the Python part: it leaves out waits for the database and
for a core, so it holds steadier than wall time on a busy machine; the load average is printed).
"queries" and "db ms" come from three more requests under CaptureQueriesContext, each query timed
by an execute wrapper, the request with the least database time kept ("db ms" is its sum; the
rest of a request is Python: middleware, views, building model instances, templates). On SQLite
the database runs inside this process: its work counts in "cpu p50", and "db ms" leaves out the
rows a query steps through after its first one. settings.DEBUG is off while timing, as in
production, so queries are not logged.
Baselines in the same run: /healthz (one query, no session: the framework floor) and
/accounts/email/ (a small page behind the sign-in, one list of addresses: about the floor every
signed-in page pays for the session, the user, the org and the header's balance).
--profile PATH prints a cProfile of PATH (10 requests, top functions by cumulative time); DETAIL
in PATH stands for the measured deployment's id, e.g. --profile /deployments/DETAIL/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

if TYPE_CHECKING:
    from django.test import Client

    from accounts.models import Organization
    from deployments.models import Deployment
    from fleet.models import Instance

BENCH_DB = "gpucloud_bench_pages"
GOAL_P95_MS = 100.0
DEPLOYMENTS = 200
STOPPED, FAILED = 30, 10  # of the 200; the rest are active
LEDGER_ENTRIES = 100_000
BATCH = 5_000
TOPUP_SHARE = 0.02
METRICS_DEPLOYMENTS = 5
DEPLOYMENT_KEYS = 20
WARMUP = 3
MODEL, GPU, REGION = "smollm2-135m-instruct", "cpu", "local"
PRICE_MICROS = 3_600_000  # $3.60/h per replica, as in the tests: a minute costs 60,000
BASELINES = ("/healthz", "/accounts/email/")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- The bench's own database ----------------------------------------------------------------


def postgres_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def postgres_admin(url: str, statement: str) -> None:
    """Run CREATE/DROP DATABASE on the server of `url`, from its maintenance database."""
    import psycopg

    parts = urlsplit(url)
    with psycopg.connect(
        host=parts.hostname or "",
        port=parts.port or 5432,
        user=parts.username or "",
        password=parts.password or "",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(statement)


@contextmanager
def bench_environment(keep: bool) -> Iterator[str]:
    """Point Django at a database of the bench's own, before django.setup(); yields a description.

    REDIS_URL is dropped on purpose: the cache, channel layer and gateway counter store are then
    in-process. The shared Redis holds whatever a concurrent test run puts there (the tests flush
    it between tests) and the metrics pages SCAN it for in-flight counters, which would measure
    someone else's keys; what grows with the org (the subject here) is database work.
    """
    configured = os.environ.get("DATABASE_URL", "")
    var_dir = tempfile.mkdtemp(prefix="gpucloud-bench-pages-")
    os.environ.pop("REDIS_URL", None)
    os.environ.update(GPUCLOUD_VAR_DIR=var_dir, DJANGO_SETTINGS_MODULE="gpucloud.settings")
    on_postgres = configured.startswith(("postgres://", "postgresql://"))
    if on_postgres:
        os.environ["DATABASE_URL"] = postgres_url(configured, BENCH_DB)
        postgres_admin(configured, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        postgres_admin(configured, f"CREATE DATABASE {BENCH_DB}")
        where = f"PostgreSQL, database {BENCH_DB} on {urlsplit(configured).hostname}"
    else:
        os.environ.pop("DATABASE_URL", None)  # the embedded topology: SQLite under GPUCLOUD_VAR_DIR
        where = f"SQLite (embedded topology) in {var_dir}; set a PostgreSQL DATABASE_URL for the production figures"
    try:
        yield where
    finally:
        close_connections()
        if on_postgres and not keep:
            postgres_admin(configured, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        if not keep:
            import shutil

            shutil.rmtree(var_dir, ignore_errors=True)
        elif on_postgres:
            print(f"kept: database {BENCH_DB}, var dir {var_dir}")
        else:
            print(f"kept: {var_dir}")


def close_connections() -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


# --- Seeding ------------------------------------------------------------------------------------


@dataclass
class Seeded:
    org: Organization
    user_id: int
    detail_id: str = ""
    meter_keys: list[str] = field(default_factory=list)
    usage_this_month: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def seed(args: argparse.Namespace) -> Seeded:
    from django.core.management import call_command

    from tests.support.personas import make_persona

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("load_catalog", verbosity=0)
    persona = make_persona("bench@example.com", org_name="Bench Org")
    seeded = Seeded(org=persona.org, user_id=persona.user.pk)
    seeded.seconds["migrate"] = time.perf_counter() - started
    rng = random.Random(args.seed)  # noqa: S311 - benchmark data, not secrets
    for step in (seed_deployments, seed_request_minutes, seed_keys, seed_ledger, check_ledger):
        t0 = time.perf_counter()
        step(seeded, rng, args)
        seeded.seconds[step.__name__] = time.perf_counter() - t0
    analyze()
    return seeded


def seed_deployments(seeded: Seeded, rng: random.Random, args: argparse.Namespace) -> None:
    """200 deployments made directly (as the page tests do), with replicas, meters and events."""
    from django.utils import timezone

    from deployments.models import Deployment, DeploymentStatus

    now = timezone.now()
    statuses = [DeploymentStatus.STOPPED] * STOPPED + [DeploymentStatus.FAILED] * FAILED
    statuses = [DeploymentStatus.ACTIVE] * (DEPLOYMENTS - len(statuses)) + statuses
    deployments = []
    for n, status in enumerate(statuses):
        created = now - timedelta(days=args.days) * rng.random()
        ended = status != DeploymentStatus.ACTIVE
        deployments.append(Deployment(
            org=seeded.org, name=f"chat-{n:03d}", status=status, model_id=MODEL, gpu_type_id=GPU, region_id=REGION,
            desired_replicas=1 + n % 2, hourly_price_micros=PRICE_MICROS, created_at=created,
            started_at=created + timedelta(minutes=2), stopped_at=created + timedelta(hours=3) if ended else None,
            status_reason="Engine exited with code 1." if status == DeploymentStatus.FAILED else "",
        ))  # fmt: skip
    Deployment.objects.bulk_create(deployments)
    seed_events(deployments, seed_instances(seeded, deployments, now))
    seeded.detail_id = deployments[0].pk  # active, one replica, and it gets request metrics


def seed_instances(seeded: Seeded, deployments: list[Deployment], now: datetime) -> list[Instance]:
    from billing.models import Service, UsageMeter
    from fleet.models import Instance, InstanceState

    instances, meters = [], []
    for deployment in deployments:
        assert deployment.started_at is not None
        running = deployment.stopped_at is None
        state = InstanceState.READY if running else InstanceState.TERMINATED
        if deployment.status == "failed":
            state = InstanceState.FAILED
        for _ in range(deployment.desired_replicas):
            instance = Instance(
                deployment=deployment, state=state, provider="local", provider_instance_id="p", tag="bench",
                api_key="k", endpoint_url="http://127.0.0.1:1", hourly_price_micros=PRICE_MICROS,
                launched_at=deployment.created_at, ready_at=deployment.started_at,
                terminated_at=deployment.stopped_at, created_at=deployment.created_at,
            )  # fmt: skip
            instances.append(instance)
            billed = int(((deployment.stopped_at or now) - deployment.created_at).total_seconds()) // 60 * 60
            meters.append(UsageMeter(
                org=seeded.org, meter_key=instance.pk, service=Service.MODEL, description=f"{MODEL} on {GPU}",
                hourly_price_micros=PRICE_MICROS, started_at=deployment.created_at, ended_at=deployment.stopped_at,
                billed_seconds=max(60, billed), billed_micros=PRICE_MICROS * max(60, billed) // 3600,
            ))  # fmt: skip
    Instance.objects.bulk_create(instances)
    UsageMeter.objects.bulk_create(meters)
    seeded.meter_keys = [m.meter_key for m in meters if m.ended_at is None]
    return instances


def seed_events(deployments: list[Deployment], instances: list[Instance]) -> None:
    from deployments.models import DeploymentEvent

    events = []
    for d in deployments:
        assert d.started_at is not None
        path = [("", "pending", d.created_at), ("pending", "provisioning", d.created_at),
                ("provisioning", "active", d.started_at)]  # fmt: skip
        if d.stopped_at is not None:
            path += [("active", d.status, d.stopped_at)]
        for before, after, at in path:
            reason = d.status_reason if after == "failed" else ""
            events.append(DeploymentEvent(deployment=d, from_status=before, to_status=after, at=at, reason=reason))
    for i in instances:
        assert i.ready_at is not None
        events.append(
            DeploymentEvent(
                deployment=i.deployment,
                instance=i,
                from_status="loading",
                to_status="ready",
                at=i.ready_at,
                reason="Engine healthy.",
            )
        )
    DeploymentEvent.objects.bulk_create(events)


def seed_request_minutes(seeded: Seeded, rng: random.Random, args: argparse.Namespace) -> None:
    """A busy day for a few active deployments: one row for every minute of the last 24 hours."""
    from django.utils import timezone

    from deployments.models import Deployment, RequestMinute

    now = timezone.now().replace(second=0, microsecond=0)
    others = Deployment.objects.filter(org=seeded.org, status="active").exclude(pk=seeded.detail_id)
    ids = [seeded.detail_id, *others.values_list("pk", flat=True)[: METRICS_DEPLOYMENTS - 1]]
    rows = []
    for deployment_id in ids:
        for minute in range(24 * 60):
            requests = rng.randint(20, 120)
            rows.append(RequestMinute(
                deployment_id=deployment_id, minute=now - timedelta(minutes=minute), requests=requests,
                errors=rng.randint(0, 2), prompt_tokens=requests * 200, completion_tokens=requests * 150,
                latency_ms_sum=requests * 900.0, ttft_ms_sum=requests * 80.0, ttft_count=requests,
                generation_ms_sum=requests * 800.0, latency_hist={"70": requests // 2, "72": requests - requests // 2},
                ttft_hist={"45": requests},
            ))  # fmt: skip
    RequestMinute.objects.bulk_create(rows, batch_size=BATCH)


def seed_keys(seeded: Seeded, rng: random.Random, args: argparse.Namespace) -> None:
    from accounts.models import ApiKeyKind, User
    from accounts.principal import Principal
    from accounts.roles import Role
    from accounts.services import api_key_create
    from deployments.models import Deployment

    principal = Principal(user=User.objects.get(pk=seeded.user_id), org=seeded.org, role=Role.OWNER)
    for deployment in Deployment.objects.filter(org=seeded.org).order_by("name")[:DEPLOYMENT_KEYS]:
        api_key_create(principal=principal, name=f"{deployment.name} key", kind=ApiKeyKind.DEPLOYMENT,
                       deployment_id=deployment.pk)  # fmt: skip


@dataclass
class LedgerLoader:
    """Appends balanced two-entry transactions straight to the tables, oldest first, so that entry
    ids follow time as they do when metering posts them. Usage moves credit from the org's
    available account to revenue; a top-up from Stripe clearing to available."""

    org: Organization
    times: list[datetime]
    rng: random.Random
    accounts: dict[str, Any] = field(default_factory=dict)  # kind -> LedgerAccount
    running: dict[int, int] = field(default_factory=dict)  # account pk -> balance so far

    def load(self, meter_keys: list[str]) -> None:
        from django.db import transaction

        from billing.ledger import org_accounts, system_account
        from billing.models import AccountKind

        available, _ = org_accounts(self.org)
        self.accounts = {"available": available, "revenue": system_account(AccountKind.REVENUE),
                         "clearing": system_account(AccountKind.STRIPE_CLEARING)}  # fmt: skip
        self.running = {a.pk: a.balance_micros for a in self.accounts.values()}
        for start in range(0, len(self.times), BATCH):
            with transaction.atomic():
                self._batch(start, self.times[start : start + BATCH], meter_keys)
        self._store_balances()

    def _batch(self, offset: int, times: list[datetime], meter_keys: list[str]) -> None:
        from billing.models import LedgerEntry, LedgerTransaction

        specs = [self._spec(offset + i, at, meter_keys) for i, at in enumerate(times)]
        txns = LedgerTransaction.objects.bulk_create(txn for txn, _ in specs)
        entries = []
        for txn, (_, lines) in zip(txns, specs, strict=True):
            for account, amount in sorted(lines, key=lambda line: line[0].pk):
                self.running[account.pk] += amount
                after = self.running[account.pk]
                entries.append(
                    LedgerEntry(
                        transaction_id=txn.pk,
                        account_id=account.pk,
                        amount_micros=amount,
                        balance_after_micros=after,
                        created_at=txn.created_at,
                    )
                )
        LedgerEntry.objects.bulk_create(entries)

    def _spec(self, n: int, at: datetime, meter_keys: list[str]) -> tuple[Any, list[tuple[Any, int]]]:
        from billing.models import LedgerTransaction, Service, TransactionKind

        available = self.accounts["available"]
        if n == 0 or self.rng.random() < TOPUP_SHARE:
            amount = self.rng.choice((25, 50, 100)) * 1_000_000
            txn = LedgerTransaction(idempotency_key=f"bench:topup:{n}", kind=TransactionKind.TOPUP, org_id=self.org.pk,
                                    description="Top-up (Stripe Checkout)", created_at=at)  # fmt: skip
            return txn, [(self.accounts["clearing"], -amount), (available, amount)]
        seconds = self.rng.choice((60, 60, 60, 60, 120, 300))
        amount = PRICE_MICROS * seconds // 3600
        meter = self.rng.choice(meter_keys)
        txn = LedgerTransaction(
            idempotency_key=f"bench:usage:{n}", kind=TransactionKind.USAGE, org_id=self.org.pk, service=Service.MODEL,
            description=f"{MODEL} on {GPU} ({seconds} s)", overdraft=False, created_at=at,
            metadata={"meter": meter, "from_s": 60 * n, "to_s": 60 * n + seconds, "gpu_seconds": seconds},
        )  # fmt: skip
        return txn, [(available, -amount), (self.accounts["revenue"], amount)]

    def _store_balances(self) -> None:
        from billing.models import LedgerAccount

        for pk, balance in self.running.items():
            LedgerAccount.objects.filter(pk=pk).update(balance_micros=balance)


def ledger_times(rng: random.Random, args: argparse.Namespace) -> list[datetime]:
    """When each of the entries happened, oldest first: evenly over the last --days days, or with
    --month-share F a fraction F of them between the first of this month and now."""
    from django.utils import timezone

    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    in_month = round(LEDGER_ENTRIES * args.month_share) if args.month_share is not None else 0
    span, month_span = timedelta(days=args.days), now - month_start
    times = [now - span * rng.random() for _ in range(LEDGER_ENTRIES - in_month)]
    if in_month:
        times = [t if t < month_start else month_start - (span - month_span) * rng.random() for t in times]
        times += [month_start + month_span * rng.random() for _ in range(in_month)]
    return sorted(times)


def seed_ledger(seeded: Seeded, rng: random.Random, args: argparse.Namespace) -> None:
    from billing.rollup import usage_days_rebuild

    LedgerLoader(seeded.org, ledger_times(rng, args), rng).load(seeded.meter_keys)
    usage_days_rebuild()  # bulk-loaded entries bypass ledger_post, which keeps the daily rollup


def check_ledger(seeded: Seeded, rng: random.Random, args: argparse.Namespace) -> None:
    from django.utils import timezone

    from billing.invariants import ledger_violations
    from billing.models import LedgerEntry

    violations = ledger_violations()
    if violations:
        raise RuntimeError(f"the seeded ledger breaks its invariants: {violations[:5]}")
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    seeded.usage_this_month = LedgerEntry.objects.filter(
        account__org=seeded.org, transaction__kind="usage", created_at__gte=month_start
    ).count()


def analyze() -> None:
    """Refresh the planner's statistics after the bulk load, as autovacuum soon would."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


# --- Measuring ----------------------------------------------------------------------------------


@dataclass
class PageTiming:
    path: str
    samples_ms: list[float]
    cpu_ms: list[float]  # this thread's CPU time per request: the Python part, without waits and preemption
    queries: int
    db_ms: float
    slowest_query_ms: float
    slowest_query: str

    def summary(self) -> dict[str, Any]:
        return {
            "p50_ms": round(pct(self.samples_ms, 0.50), 2),
            "p95_ms": round(pct(self.samples_ms, 0.95), 2),
            "max_ms": round(max(self.samples_ms), 2),
            "cpu_p50_ms": round(pct(self.cpu_ms, 0.50), 2),
            "queries": self.queries,
            "db_ms": round(self.db_ms, 1),
        }


def signed_in(seeded: Seeded) -> Client:
    """A browser session of the bench user, working in the seeded org (as the page tests sign in)."""
    from django.test import Client

    from accounts.auth import SESSION_ORG_KEY
    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(pk=seeded.user_id))
    session = client.session
    session[SESSION_ORG_KEY] = seeded.org.pk
    session.save()
    return client


def get_ok(client: Client, path: str) -> None:
    response = client.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} answered {response.status_code}")


@dataclass
class QueryTimer:
    """An execute wrapper that records each query's time in ms (CaptureQueriesContext keeps 1 ms resolution)."""

    times: list[float]

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times.append((time.perf_counter() - started) * 1000)


def measure(client: Client, paths: list[str], requests: int) -> list[PageTiming]:
    """Warm each page up, then time `requests` rounds that visit every page once, in turn: a burst
    of other work on the machine then slows all pages alike instead of whichever ran during it."""
    for path in paths:
        for _ in range(WARMUP):
            get_ok(client, path)
    samples: dict[str, list[float]] = {path: [] for path in paths}
    cpu: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(requests):
        for path in paths:
            started, cpu_started = time.perf_counter(), time.thread_time()
            get_ok(client, path)
            samples[path].append((time.perf_counter() - started) * 1000)
            cpu[path].append((time.thread_time() - cpu_started) * 1000)
    return [PageTiming(path, samples[path], cpu[path], *queries_of(client, path)) for path in paths]


def queries_of(client: Client, path: str, tries: int = 3) -> tuple[int, float, float, str]:
    """The page's queries, counted and timed: (count, total ms, slowest ms, slowest SQL) of the
    quickest of `tries` more requests (one request can catch a stall that is not the page's own)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    runs = []
    for _ in range(tries):
        timed: list[float] = []
        with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(QueryTimer(timed)):
            get_ok(client, path)
        runs.append(list(zip(timed, (q["sql"] for q in captured.captured_queries), strict=True)))
    times = min(runs, key=lambda run: sum(t for t, _ in run))
    slowest = max(times, default=(0.0, ""))
    return len(times), sum(t for t, _ in times), slowest[0], slowest[1]


def profile(client: Client, path: str) -> None:
    import cProfile
    import pstats

    get_ok(client, path)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(10):
        get_ok(client, path)
    profiler.disable()
    print(f"\n== cProfile of 10 x GET {path}, top 30 by cumulative time")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def pages(seeded: Seeded) -> list[str]:
    return ["/dashboard/", "/deployments/", f"/deployments/{seeded.detail_id}/", "/billing/", "/catalog/",
            f"/catalog/{MODEL}/", "/api-keys/", "/organization/"]  # fmt: skip


def print_table(timings: list[PageTiming]) -> None:
    print(f"\n{'page':<44} | {'p50 ms':>7} | {'p95 ms':>7} | {'max ms':>7} | {'cpu p50':>7} | {'queries':>7} | "
          f"{'db ms':>6} | {'slowest query ms':>16}")  # fmt: skip
    print("-" * 122)
    for t in timings:
        s = t.summary()
        mark = "  > goal" if s["p95_ms"] > GOAL_P95_MS else ""
        figures = f"{s['p50_ms']:>7.1f} | {s['p95_ms']:>7.1f} | {s['max_ms']:>7.1f} | {s['cpu_p50_ms']:>7.1f}"
        print(f"{t.path:<44} | {figures} | {t.queries:>7} | {t.db_ms:>6.1f} | {t.slowest_query_ms:>16.1f}{mark}")
    print("cpu p50: this process's CPU time per request (Python: middleware, views, building model instances,")
    print("templates; without waits for the database or for a core). db ms: summed query times of one request")
    print("(the quickest of three).")
    for t in timings:
        if t.summary()["p95_ms"] > GOAL_P95_MS and t.slowest_query:
            print(f"slowest query of {t.path} ({t.slowest_query_ms:.1f} ms): {t.slowest_query[:400]}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    seeded = seed(args)
    print("seeded in " + ", ".join(f"{k} {v:.1f} s" for k, v in seeded.seconds.items()), flush=True)
    print(f"usage entries in the current month: {seeded.usage_this_month:,}", flush=True)
    settings.DEBUG = False  # as in production: no per-query logging while timing
    client = signed_in(seeded)
    requests = 15 if args.quick else 50
    load_before = os.getloadavg()[0]
    measured = measure(client, [*BASELINES, *pages(seeded)], requests)
    baselines, timings = measured[: len(BASELINES)], measured[len(BASELINES) :]
    print_table(baselines + timings)
    load = max(load_before, os.getloadavg()[0])
    print(f"load average (1 min) while timing: up to {load:.2f} on {os.cpu_count()} cores (more inflates wall times)")
    for path in args.profile or []:
        profile(client, path.replace("DETAIL", seeded.detail_id))
    result = {
        "pages": {t.path: t.summary() for t in timings},
        "baseline_p95_ms": round(pct(baselines[0].samples_ms, 0.95), 2),
        "signed_in_floor_p95_ms": round(pct(baselines[1].samples_ms, 0.95), 2),
        "requests_per_page": requests,
        "load_avg_1m": round(load, 2),
        "cores": os.cpu_count(),
        "deployments": DEPLOYMENTS,
        "ledger_entries": LEDGER_ENTRIES,
        "usage_entries_this_month": seeded.usage_this_month,
        "database": connection.vendor,
        "goal_p95_ms": GOAL_P95_MS,
        "all_under_goal": all(t.summary()["p95_ms"] <= GOAL_P95_MS for t in timings),
    }
    slowest = max(timings, key=lambda t: pct(t.samples_ms, 0.95))
    result["slowest_page"] = slowest.path
    print(f"slowest page: {slowest.path}; median of the page p95s: "
          f"{statistics.median(pct(t.samples_ms, 0.95) for t in timings):.1f} ms")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 timed requests per page instead of 50")
    parser.add_argument("--keep", action="store_true", help="keep the bench database and var dir afterwards")
    parser.add_argument("--days", type=int, default=60, help="the ledger spans this many days back from now")
    parser.add_argument("--month-share", type=float, default=None, help="fraction of entries in the current month")
    parser.add_argument("--profile", action="append", metavar="PATH", help="cProfile a page (DETAIL: the detail id)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.month_share is not None and not 0 <= args.month_share <= 1:
        parser.error("--month-share is a fraction between 0 and 1")
    if args.days < 32:
        parser.error("--days must reach past the first of the month (at least 32)")
    started = time.monotonic()
    with bench_environment(args.keep) as where:
        print(f"database: {where}", flush=True)
        result = run(args)
    result["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
