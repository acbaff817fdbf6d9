"""Fleet faults (issue 15 §2, §3, §9): engines stopped right after start, engines killed at random
ages, creates arriving at once. Real engine processes (llama.cpp, SmolLM2) on this machine.

Run from the repository root, on PostgreSQL (what the capacity figures are about):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/fleet_faults.py [--stops 21] [--kills 20] [--creates 10] [--trials 3]

Nothing touches the configured database's data: the run migrates a uniquely named throwaway
database and drops it at the end. Tasks run eagerly in the thread that enqueues them (as the
test suite runs them). Engines carry a fleet tag of the run's own and are all stopped at the end.

1. Stops right after start (§3). `--stops` engines launched one at a time with the local driver,
   each stopped (driver.terminate) at a moment spread evenly from 0 to 1 s after its launch, the
   window where llama.cpp loads the model. Seconds from the stop to the engine gone: p50, p90,
   max, and how many took over 2 s; then whether its slot is free again.
2. Kills at random ages (§2). `--kills` engines deployed through the API four at a time (local
   provider, 4 slots), each one's start moved back 0-10 minutes with its meter (a fake age: the
   kill itself is a real SIGKILL after a real life of seconds), beat's usage tick, the SIGKILLs at
   random moments, another tick after the deaths, the reconciler (lost instances recorded and
   replaced), then every deployment deleted. Counts: recorded ends more than 2 s from the kill,
   sessions whose ledger charge is not max(60, lifetime) seconds, leaks (engines still running or
   instances not final after the teardown), ledger invariant violations.
3. Creates at once (§9). `--creates` POST /api/v1/deployments at once from as many threads,
   `--trials` times, on the local provider with 2 slots: the answers' statuses, and the most
   engines seen running at once (a thread looks every 5 ms) against the slots.
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
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import django

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gpucloud.settings")
django.setup()

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_databases, teardown_databases  # noqa: E402

from billing.invariants import ledger_violations  # noqa: E402
from catalog.data import SMOLLM2_GGUF  # noqa: E402
from catalog.models import Provider  # noqa: E402
from catalog.services import catalog_load  # noqa: E402
from deployments.models import Deployment  # noqa: E402
from fleet.models import FINAL_STATES, Instance  # noqa: E402
from fleet.offers import offers_refresh_all  # noqa: E402
from fleet.providers.base import InstanceSpec  # noqa: E402
from fleet.providers.local.driver import LocalDriver  # noqa: E402
from fleet.reconciler import fleet_reconcile  # noqa: E402
from gpucloud.celery import app  # noqa: E402
from tests.support.billing import billing_mismatches, fund  # noqa: E402
from tests.support.fleet import creates_at_once, engines_killed_at_random_ages, engines_peak  # noqa: E402
from tests.support.personas import make_persona  # noqa: E402

SMOL = {"name": "b", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "replicas": 1}
AT_ONCE = 4
END_TOLERANCE = timedelta(seconds=2)


@contextmanager
def throwaway_database() -> Iterator[None]:
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"fleet_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    old = setup_databases(verbosity=0, interactive=False)
    try:
        yield
    finally:
        connections.close_all()
        teardown_databases(old, verbosity=0)


def local_driver(instances_dir: Path, tag: str, slots: int) -> LocalDriver:
    return LocalDriver(slug="local", config={"instances_dir": str(instances_dir), "tag": tag, "slots": slots,
                                             "threads": 1})  # fmt: skip


def local_provider(instances_dir: Path, slots: int) -> None:
    Provider.objects.filter(slug="local").update(config={"instances_dir": str(instances_dir), "slots": slots,
                                                         "threads": 1})  # fmt: skip
    offers_refresh_all()


def stops(count: int, workdir: Path, tag: str) -> None:
    driver = local_driver(workdir / "stops", tag, 1)
    took, busy = [], 0
    for step in range(count):
        spec = InstanceSpec(instance_id=f"inst_stop{step}", tag=tag, engine="llama.cpp", model={"gguf": SMOLLM2_GGUF},
                            served_model_name="x", api_key="k", gpu_type="cpu")  # fmt: skip
        driver.launch(spec, driver.offers()[0])
        time.sleep(step / max(1, count - 1))
        asked = time.monotonic()
        driver.terminate(spec.instance_id)
        took.append(time.monotonic() - asked)
        busy += driver.offers()[0].available != 1
    deciles = statistics.quantiles(took, n=10, method="inclusive")
    print(f"stops right after start: {count} stops, p50 {statistics.median(took):.2f} s, p90 {deciles[8]:.2f} s, "
          f"max {max(took):.2f} s, over 2 s: {sum(t > 2 for t in took)}, slot still taken after: {busy}")  # fmt: skip


def deploy(client: Client, auth: dict[str, Any]) -> str:
    response = client.post("/api/v1/deployments", data=json.dumps(SMOL), content_type="application/json", **auth)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def kills(count: int, workdir: Path, tag: str, client: Client, auth: dict[str, Any]) -> None:
    local_provider(workdir / "kills", AT_ONCE)
    rng = random.Random(15)  # noqa: S311  (repeatable ages, not a secret)
    killed: dict[str, Any] = {}
    for _ in range(max(1, count // AT_ONCE)):
        deployments = [deploy(client, auth) for _ in range(AT_ONCE)]
        victims = [Instance.objects.get(deployment_id=pk).pk for pk in deployments]
        killed |= engines_killed_at_random_ages(victims, workdir / "kills", rng)
        fleet_reconcile()
        for pk in deployments:
            client.delete(f"/api/v1/deployments/{pk}", **auth)
    ends = {pk: Instance.objects.get(pk=pk).terminated_at for pk, at in killed.items()}
    wrong = sum(not (end and timedelta(0) <= end - killed[pk] <= END_TOLERANCE) for pk, end in ends.items())
    leaks = len(local_driver(workdir / "kills", tag, AT_ONCE).list_instances(tag))
    leaks += Instance.objects.exclude(state__in=FINAL_STATES).count()
    print(f"kills at random ages: {len(killed)} kills, {leaks} leaks, {wrong} recorded ends off by more than 2 s, "
          f"{len(billing_mismatches())} of {Instance.objects.count()} sessions mis-billed, "
          f"{len(ledger_violations())} ledger violations")  # fmt: skip


def creates(count: int, trials: int, workdir: Path, tag: str, auth: dict[str, Any]) -> None:
    local_provider(workdir / "creates", 2)
    watcher = local_driver(workdir / "creates", tag, 2)
    statuses: Counter[int] = Counter()
    peaks = [create_at_once(count, watcher, tag, auth, statuses) for _ in range(trials)]
    print(f"creates at once: {trials} x {count} creates, answers {dict(sorted(statuses.items()))}, most engines "
          f"at once per trial {peaks} on 2 slots")  # fmt: skip


def create_at_once(count: int, watcher: LocalDriver, tag: str, auth: dict[str, Any], statuses: Counter[int]) -> int:
    """`count` creates at once; the most engines seen running meanwhile. Everything is deleted after."""
    with engines_peak(watcher, tag) as most:
        statuses.update(status for status, _ in creates_at_once(auth, SMOL, count))
    for pk in Deployment.objects.exclude(status="stopped").values_list("pk", flat=True):
        Client().delete(f"/api/v1/deployments/{pk}", **auth)
    return most[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stops", type=int, default=21)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--creates", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    tag = f"gpucloud-bench-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    settings.CELERY_TASK_ALWAYS_EAGER = app.conf.task_always_eager = True
    print(f"{connection.vendor}, {os.cpu_count()} CPUs, fleet tag {tag}")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch:
        workdir = Path(scratch)
        try:
            if args.stops:
                stops(args.stops, workdir, tag)
            with throwaway_database():
                catalog_load()
                persona = make_persona(f"bench-{uuid.uuid4().hex[:6]}@example.com")
                fund(persona.org, 1_000_000_000)
                if args.kills:
                    kills(args.kills, workdir, tag, Client(), persona.auth)
                if args.creates:
                    creates(args.creates, args.trials, workdir, tag, persona.auth)
        finally:
            for sub in ("stops", "kills", "creates"):
                driver = local_driver(workdir / sub, tag, 1)
                for instance in driver.list_instances(tag):
                    driver.terminate(instance.provider_instance_id)


if __name__ == "__main__":
    main()
