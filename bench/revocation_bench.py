"""Revocation across gateway processes: how long a revoked key is still accepted somewhere.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/revocation_bench.py            # about a minute; the last line is JSON

The distributed topology on a throwaway PostgreSQL database (created and dropped; the configured one
is left alone) and the configured Redis: first two uvicorn servers on two ports, then one uvicorn
with three workers behind one port. Each round creates a key, uses it until every process has it
cached (requests on connections of their own, so every worker takes some), revokes it through the
management API of the first server, and keeps calling /v1/models with it from several clients on
fresh connections, spread over the servers, for --poll-seconds (longer than the 5 s key cache). The
revocation time of a round is from the revoke's answer to the answer of the last request that was
still accepted (0 when none was); the promise is under 1 s (README, "Who may call").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import django

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gpucloud.settings")
django.setup()  # on DATABASE_URL from the environment, before the models are imported

import aiohttp  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.models import ApiKeyKind  # noqa: E402
from accounts.principal import Principal  # noqa: E402
from accounts.roles import Role  # noqa: E402
from accounts.services import api_key_create  # noqa: E402
from tests.support.personas import make_persona  # noqa: E402
from tests.support.processes import gateway_process  # noqa: E402

WARM_REQUESTS = 30  # per server, each on its own connection: every worker behind a port gets some


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll-seconds", type=float, default=6.0)
    parser.add_argument("--clients", type=int, default=6, help="concurrent pollers after the revoke")
    return parser.parse_args()


async def call(session: aiohttp.ClientSession, url: str, key: str) -> int:
    async with session.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}) as response:
        await response.read()
        return int(response.status)


@dataclass
class Round:
    last_accepted_s: float  # from the revoke's answer to the last answer that still accepted the key
    accepted: int  # requests accepted after the revoke's answer
    refused: int
    first_refusal_s: dict[str, float]  # per server: from the revoke's answer to its first refusal


async def one_round(urls: list[str], key_id: str, plaintext: str, admin: str, args: argparse.Namespace) -> Round:
    connector = aiohttp.TCPConnector(force_close=True, limit=0)  # a fresh connection per request
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        warm = await asyncio.gather(*(call(session, url, plaintext) for url in urls for _ in range(WARM_REQUESTS)))
        assert set(warm) == {200}, warm
        headers = {"Authorization": f"Bearer {admin}"}
        async with session.delete(f"{urls[0]}/api/v1/api-keys/{key_id}", headers=headers) as response:
            assert response.status == 200, await response.text()
        revoked = time.monotonic()
        accepted: list[float] = []
        refused: dict[str, list[float]] = {url: [] for url in urls}

        async def poll(index: int) -> None:
            n = index
            while time.monotonic() - revoked < args.poll_seconds:
                url = urls[n % len(urls)]
                status = await call(session, url, plaintext)
                n += 1
                assert status in (200, 401), status
                (accepted if status == 200 else refused[url]).append(time.monotonic() - revoked)

        await asyncio.gather(*(poll(i) for i in range(args.clients)))
    return Round(
        last_accepted_s=max(accepted, default=0.0),
        accepted=len(accepted),
        refused=sum(len(times) for times in refused.values()),
        first_refusal_s={url: min(times, default=float("inf")) for url, times in refused.items()},
    )


@contextlib.contextmanager
def throwaway_database() -> Iterator[None]:
    """A fresh, migrated PostgreSQL database for the run (the servers share it), dropped afterwards."""
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"revocation_bench_{os.getpid()}"
    configured = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(configured, verbosity=0, keepdb=False)


@contextlib.contextmanager
def started(var_dir: Path, topology: str) -> Iterator[list[str]]:
    with contextlib.ExitStack() as stack:
        if topology == "2 processes":
            servers = [stack.enter_context(gateway_process(var_dir, name=name)) for name in ("a", "b")]
        else:
            servers = [stack.enter_context(gateway_process(var_dir, workers=3, name="workers"))]
        yield [server.url for server in servers]


def main() -> None:
    args = parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        sys.exit("Set DATABASE_URL (PostgreSQL) and REDIS_URL: the distributed topology is what is measured.")
    results: dict[str, list[Round]] = {}
    with throwaway_database(), tempfile.TemporaryDirectory(prefix="revocation-bench-") as scratch:
        persona = make_persona("bench@example.com", org_name="Bench")
        owner = Principal(user=persona.user, org=persona.org, role=Role.OWNER)
        admin = api_key_create(principal=owner, name="admin", kind=ApiKeyKind.ACCOUNT)[1]
        for topology in ("2 processes", "3 workers behind one port"):
            with started(Path(scratch), topology) as urls:
                rounds = []
                for _ in range(args.rounds):
                    key, plaintext = api_key_create(principal=owner, name="bench", kind=ApiKeyKind.ACCOUNT)
                    rounds.append(asyncio.run(one_round(urls, key.pk, plaintext, admin, args)))
            results[topology] = rounds
            report(topology, rounds)
    print(json.dumps({topology: summary(rounds) for topology, rounds in results.items()}))


def summary(rounds: list[Round]) -> dict[str, float]:
    last = [r.last_accepted_s for r in rounds]
    first = [max(r.first_refusal_s.values()) for r in rounds]
    return {
        "revocation_s_median": round(statistics.median(last), 3),
        "revocation_s_max": round(max(last), 3),
        "accepted_after_revoke": sum(r.accepted for r in rounds),
        "refused_after_revoke": sum(r.refused for r in rounds),
        "slowest_server_first_refusal_s_max": round(max(first), 3),
    }


def report(topology: str, rounds: list[Round]) -> None:
    figures = summary(rounds)
    print(f"{topology}: revocation time (revoke answered -> last acceptance) median "
          f"{figures['revocation_s_median']:.3f} s, max {figures['revocation_s_max']:.3f} s over {len(rounds)} rounds; "
          f"{figures['accepted_after_revoke']} requests accepted and {figures['refused_after_revoke']} refused after "
          f"the revoke; the slowest server's first refusal came {figures['slowest_server_first_refusal_s_max']:.3f} s "
          "after it at most")  # fmt: skip


if __name__ == "__main__":
    main()
