"""Does the management API answer what its OpenAPI description says? schemathesis measures it.

    .venv/bin/python bench/api_conformance.py                  # every phase, all checks
    .venv/bin/python bench/api_conformance.py --max-examples 20 --seed 1

What it starts, and stops again: a throwaway embedded server as `make run` serves it (`manage.py
serve`: uvicorn plus the in-process worker and beat, SQLite in a temporary GPUCLOUD_VAR_DIR,
DATABASE_URL and REDIS_URL ignored), on a free port (or --port), with one verified user made by
`manage.py create_user` holding $1000 of credit and an account API key. Engines that deployments
created during the run launch on this machine are stopped with the server (and killed if a run
leaves one behind: their command lines carry this run's fleet tag).

Payments work as an operator who sells GPU time runs them: Stripe's secret key is set and its API is
the local fake that follows Stripe's documented contract (tests/fakes/stripe_server.py), so adding
funds and saving a card are exercised; --without-stripe measures a platform without payments, where
those two answer their documented 503 (which schemathesis counts as a server error all the same).

So that the fuzzer reaches more than 404s, the run first makes what the per-deployment and per-org
operations name (a cold serverless deployment, which launches nothing, and a webhook on it) and gives
their ids to schemathesis as parameter values (schemathesis.toml's [parameters]); the stateful phase
makes its own as well. Requests are not sent extra headers the description does not name (see
`_write_parameters`).

What it runs: `schemathesis run <server>/api/v1/openapi.json --checks all` with the key, every
phase (examples, coverage, fuzzing, stateful), one worker, then prints one line per kind of
failure with its count (schemathesis' summary: one failure per distinct problem it found) and a
last line that is one JSON object: {"checks": {...}, "failures": N}. Exit status 0 when none.
The run never revokes or regenerates its own key (bench/conformance_hooks.py says why).

The kinds that matter most for "the API describes itself truly" (`st explain ST103` tells more):
- ST103 (status_code_conformance): an answer's status is not in the operation's description;
- ST202 (positive_data_acceptance): a request the schema calls valid was refused;
- ST201 (negative_data_rejection): a request the schema calls invalid was accepted;
- ST101 (not_a_server_error): a 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.stripe_server import FakeStripe  # noqa: E402  (after the repository is importable)

TAG = f"gpucloud-conformance-{os.getpid()}"
EMAIL = "conformance@example.com"
# Test-mode keys for the local Stripe fake: it accepts any sk_test_ key.
STRIPE_TEST_KEYS = {
    "STRIPE_SECRET_KEY": "sk_test_conformance",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_conformance",
    "STRIPE_WEBHOOK_SECRET": "whsec_conformance",
}


def main() -> int:
    args = _arguments()
    var_dir = Path(tempfile.mkdtemp(prefix="gpucloud-conformance-"))
    env = _environment(var_dir)
    server: subprocess.Popen[bytes] | None = None
    with ExitStack() as stack:
        if not args.without_stripe:
            stripe = stack.enter_context(FakeStripe())
            env.update(STRIPE_TEST_KEYS, STRIPE_API_BASE=stripe.url)
        try:
            key = _seed(env)
            port = args.port or _free_port()
            base = f"http://127.0.0.1:{port}"
            log = (var_dir / "serve.log").open("wb")
            server = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
            )
            _wait_healthy(base, server)
            _write_parameters(var_dir, _resources(base, key))
            return _measure(args, base, key, var_dir, env)
        finally:
            _stop(server)
            _kill_engines()
            if not args.keep:
                shutil.rmtree(var_dir, ignore_errors=True)


def _measure(args: argparse.Namespace, base: str, key: str, var_dir: Path, env: dict[str, str]) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base}/api/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(args.max_examples),
        "--workers",
        "1",
        "--request-timeout",
        "75",  # a request to a cold deployment may be held up to its cold_start_wait_seconds (60 s)
        "--output-truncate",
        "false",
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    print("$", " ".join(command).replace(key, "gpc_live_..."), flush=True)
    output = _run_streaming(command, cwd=var_dir, env=env, timeout=args.timeout)
    counts = _failures_by_check(output)
    print("--- failures by check ---")
    for check, count in sorted(counts.items()):
        print(f"{check}: {count}")
    print(json.dumps({"checks": dict(sorted(counts.items())), "failures": sum(counts.values())}))
    if args.keep:
        print(f"kept {var_dir}")
    return 0 if not counts else 1


def _api(base: str, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _resources(base: str, key: str) -> dict[str, str]:
    """What the path parameters name: the user's organization, a deployment and a webhook on it."""
    org_id = _api(base, key, "GET", "/me")["current_organization"]["id"]
    deployment = _api(base, key, "POST", "/deployments", {
        "name": "conformance", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local",
        "kind": "serverless", "start_cold": True,
    })  # fmt: skip
    webhook = _api(base, key, "POST", f"/deployments/{deployment['id']}/webhooks", {
        "url": "https://127.0.0.1:9/gpucloud", "events": ["deployment.active"],  # nothing listens there
    })  # fmt: skip
    return {"org_id": org_id, "deployment_id": deployment["id"], "webhook_id": webhook["id"]}


def _write_parameters(var_dir: Path, values: dict[str, str]) -> None:
    # allow-extra-parameters = false: schemathesis would otherwise count a request with a header the
    # description does not name (x-schemathesis-unknown-property) as invalid input the API accepted;
    # HTTP has a recipient ignore header fields it does not recognize, and so does every route here.
    lines = [
        "[generation]",
        "allow-extra-parameters = false",
        "[parameters]",
        *(f'"path.{name}" = {json.dumps(value)}' for name, value in values.items()),
    ]
    (var_dir / "schemathesis.toml").write_text("\n".join(lines) + "\n")
    print("parameters:", json.dumps(values), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="serve on this port (default: a free one)")
    parser.add_argument("--max-examples", type=int, default=30, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, help="schemathesis' random seed, to repeat a run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds schemathesis may run")
    parser.add_argument("--keep", action="store_true", help="keep the server's var/ (its log, the report)")
    parser.add_argument("--without-stripe", action="store_true", help="measure a platform without payments")
    return parser.parse_args()


def _environment(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        GPUCLOUD_VAR_DIR=str(var_dir),
        GPUCLOUD_FLEET_TAG=TAG,
        GPUCLOUD_LOCAL_THREADS="1",
        PYTHONUNBUFFERED="1",
        WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
    )  # the seeded webhook's receiver: nothing listens
    return env


def _seed(env: dict[str, str]) -> str:
    """Migrate, load the catalog, and make the user: returns the account key create_user prints last."""
    for command in (["migrate", "--noinput", "-v0"], ["load_catalog"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300)
    made = subprocess.run(
        [sys.executable, "manage.py", "create_user", EMAIL, "--password", "conformance-password-1",
         "--credit", "1000", "--api-key", "conformance"],
        cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True,
    )  # fmt: skip
    lines = made.stdout.strip().splitlines()
    key_id = re.search(r"Account API key (key_\w+)", made.stdout)
    assert key_id, made.stdout
    env["GPUCLOUD_CONFORMANCE_KEY_ID"] = key_id[1]
    env["SCHEMATHESIS_HOOKS"] = "conformance_hooks"
    env["PYTHONPATH"] = str(ROOT / "bench")
    return lines[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}) before it answered")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer /healthz within 120 s")


def _run_streaming(command: list[str], *, cwd: Path, env: dict[str, str], timeout: int) -> str:
    """Run schemathesis, echoing its output as it comes; returns the output."""
    lines = []
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as run:
        assert run.stdout is not None
        for line in run.stdout:
            print(line, end="", flush=True)
            lines.append(line)
            if time.monotonic() > deadline:
                run.kill()
                raise SystemExit(f"schemathesis ran past {timeout} s")
    return "".join(lines)


# schemathesis' summary lists each kind of failure with its code and count ("❌ ST103 Undocumented
# status code: 65"); `st explain ST103` tells what a code means.
def _failures_by_check(output: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    summary = output.rsplit("Failures:", 1)[-1] if "Failures:" in output else ""
    for code, title, count in re.findall(r"^\s*\S+ (ST\d+) (.+): (\d+)$", summary, flags=re.M):
        counts[f"{code} {title}"] += int(count)
    return counts


def _stop(server: subprocess.Popen[bytes] | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)  # serve stops its worker, beat and engines on SIGTERM
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def _kill_engines() -> None:
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if TAG.encode() in argv and entry.name.isdigit():
            os.kill(int(entry.name), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
