"""What the platform's pod proxy (gateway/pod_proxy.py) adds to a request, next to the same request
sent straight to the pod's port: latency of small GETs one at a time, requests per second with 8
clients, and a 4 MB upload and download.

    .venv/bin/python bench/pod_proxy.py              # about 30 s
    .venv/bin/python bench/pod_proxy.py --requests 2000

What runs: a real local pod (gpucloud/shell, in its bubblewrap sandbox where installed) serving an
HTTP echo on its port 8080; the platform's ASGI app under uvicorn (uvloop + httptools, one worker) on a
throwaway SQLite database; this process is the client (httpx, keep-alive), passing the pod's proxy
token as a header. Each figure prints direct, proxied and their ratio; the last line is one JSON
object of the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.gateway_bench import PYTHON, Platform, free_port, seed_user

# The platform this bench serves lives in a throwaway directory; Django is set up for it here, before
# the platform's modules are imported (seed_user migrates it in main).
VAR_DIR = tempfile.mkdtemp(prefix="pod-proxy-bench-")
PLATFORM = Platform(var_dir=VAR_DIR, engine="http://127.0.0.1:9")  # no engine: seed_user's deploy is unused
for _name in ("DATABASE_URL", "REDIS_URL"):  # the servers it starts use the throwaway SQLite; so must it
    os.environ.pop(_name, None)
os.environ.update(PLATFORM.env())
django.setup()

from accounts.models import Organization  # noqa: E402
from accounts.principal import Principal  # noqa: E402
from accounts.roles import Role  # noqa: E402
from deployments.pod_settings import PodSettings  # noqa: E402
from deployments.pods import pod_create  # noqa: E402
from fleet import provisioning  # noqa: E402
from fleet.drivers import driver  # noqa: E402
from fleet.models import Instance  # noqa: E402
from tests.support.billing import fund  # noqa: E402

SERVER = """
import http.server, os
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes: without it each answer waits ~40 ms for an ACK
    def do_GET(self):
        size = int(self.path.rsplit("/", 1)[-1] or 1024)
        self.reply(b"x" * size)
    def do_POST(self):
        n = int(self.headers["content-length"]); self.rfile.read(n); self.reply(str(n).encode())
    def reply(self, body):
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT_8080"])), Echo).serve_forever()
"""


def latencies(client: httpx.Client, url: str, count: int, headers: dict[str, str]) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


def per_second(url: str, headers: dict[str, str], seconds: float = 5.0, clients: int = 8) -> float:
    deadline = time.monotonic() + seconds

    def one() -> int:
        done = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                response = client.get(url, headers=headers)
                assert response.status_code == 200, (response.status_code, response.text[:300])
                done += 1
        return done

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(lambda _: one(), range(clients))) / seconds


def transfer(client: httpx.Client, base: str, headers: dict[str, str], size: int) -> tuple[float, float]:
    """Seconds to upload `size` bytes, then to download as many."""
    started = time.perf_counter()
    assert client.post(f"{base}/up", content=b"y" * size, headers=headers).text == str(size)
    up = time.perf_counter() - started
    started = time.perf_counter()
    assert len(client.get(f"{base}/{size}", headers=headers).content) == size
    return up, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--jupyter", action="store_true", help="also JupyterLab's GET /api/status, direct vs proxied")
    args = parser.parse_args()
    platform = PLATFORM
    try:
        seed_user(platform)  # migrates the throwaway database and loads the catalog
        pod_id, token, direct = running_pod()
        port = free_port()
        platform.gateway = f"http://127.0.0.1:{port}"
        platform.start([PYTHON, "-m", "uvicorn", "gpucloud.asgi:application", "--port", str(port),
                        "--log-level", "warning", "--no-access-log"], f"{platform.gateway}/healthz")  # fmt: skip
        proxied = f"{platform.gateway}/pods/{pod_id}/ports/8080"
        headers = {"x-gpucloud-pod-token": token}
        try:
            figures = measure(direct, f"{proxied}", headers, args.requests)
            if args.jupyter:
                figures |= measure_jupyter(platform.gateway, args.requests // 4)
        finally:
            platform.stop()
            stop_pod(pod_id)
    finally:
        shutil.rmtree(VAR_DIR, ignore_errors=True)
    print(json.dumps(figures))


def measure_jupyter(gateway: str, count: int) -> dict[str, object]:
    """A JupyterLab pod (gpucloud/jupyterlab, as the jupyterlab template runs it): its GET /api/status,
    an authenticated Jupyter request, straight to its port and through the proxy."""
    pod_id, token, direct = running_pod(
        image="gpucloud/jupyterlab", ports=["8888/http"], env={"JUPYTER_TOKEN": "bench"}, command=[],
        probe=lambda url, pod: f"{url}/pods/{pod}/ports/8888/api/status?token=bench",
    )  # fmt: skip
    path = f"/pods/{pod_id}/ports/8888/api/status?token=bench"
    figures: dict[str, float] = {}
    try:
        with httpx.Client(timeout=30) as client:
            headers = {"x-gpucloud-pod-token": token}
            for name, url in (("direct", direct + path), ("proxied", gateway + path)):
                latencies(client, url, 20, headers)
                times = sorted(latencies(client, url, count, headers))
                figures[f"jupyter_{name}_p50_ms"] = round(statistics.median(times), 3)
                figures[f"jupyter_{name}_p99_ms"] = round(times[int(len(times) * 0.99) - 1], 3)
    finally:
        stop_pod(pod_id)
    for figure in ("p50_ms", "p99_ms"):
        direct_ms, proxied_ms = figures[f"jupyter_direct_{figure}"], figures[f"jupyter_proxied_{figure}"]
        print(f"jupyter {figure:>6}: direct {direct_ms}, proxied {proxied_ms} (x{proxied_ms / direct_ms:.2f})")
    return dict(figures)


def measure(direct: str, proxied: str, headers: dict[str, str], count: int) -> dict[str, object]:
    figures: dict[str, object] = {"requests": count}
    with httpx.Client(timeout=30) as client:
        for name, base in (("direct", direct), ("proxied", proxied)):
            latencies(client, f"{base}/1024", 50, headers)  # warm: connections, caches
            times = sorted(latencies(client, f"{base}/1024", count, headers))
            figures[f"{name}_p50_ms"] = round(statistics.median(times), 3)
            figures[f"{name}_p99_ms"] = round(times[int(len(times) * 0.99) - 1], 3)
            figures[f"{name}_rps_8_clients"] = round(per_second(f"{base}/1024", headers))
            up, down = transfer(client, base, headers, 4 * 1024 * 1024)
            figures[f"{name}_4mb_up_s"], figures[f"{name}_4mb_down_s"] = round(up, 4), round(down, 4)
    for figure in ("p50_ms", "p99_ms", "4mb_up_s", "4mb_down_s"):
        ratio = float(figures[f"proxied_{figure}"]) / max(float(figures[f"direct_{figure}"]), 1e-9)  # type: ignore[arg-type]
        print(f"{figure:>14}: direct {figures[f'direct_{figure}']}, proxied {figures[f'proxied_{figure}']} "
              f"(x{ratio:.2f})")  # fmt: skip
    rps = float(figures["proxied_rps_8_clients"]) / float(figures["direct_rps_8_clients"])  # type: ignore[arg-type]
    print(f"  rps 8 clients: direct {figures['direct_rps_8_clients']}, proxied {figures['proxied_rps_8_clients']} "
          f"(x{rps:.2f})")  # fmt: skip
    return figures


def running_pod(
    *,
    image: str = "gpucloud/shell",
    ports: list[str] | None = None,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    probe: Callable[[str, str], str] = lambda url, _pod: f"{url}/16",
) -> tuple[str, str, str]:
    """A local pod (by default serving the echo on 8080): its id, proxy token and its first port's direct URL."""

    org = Organization.objects.get(name="Bench")
    owner = Principal(user=org.memberships.get().user, org=org, role=Role.OWNER)
    fund(org, 10_000_000)
    asked = PodSettings(name="bench", image=image, gpu_type="cpu", region="local", env=env or {},
                        command=["python3", "-c", SERVER] if command is None else command,
                        ports=ports or ["8080/http"])  # fmt: skip
    deployment = pod_create(principal=owner, asked=asked)
    machine = deployment.instances.get()
    provisioning.instance_provision(machine.pk)
    machine.refresh_from_db()
    url = driver("local").port_url(machine.provider_instance_id, int((ports or ["8080/http"])[0].split("/")[0]))
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(probe(url, deployment.pk), timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the pod's server did not start"
        time.sleep(0.1)
    provisioning.instance_check_ready(machine.pk)
    return deployment.pk, deployment.pod.proxy_token, url


def stop_pod(pod_id: str) -> None:
    for machine in Instance.objects.filter(deployment_id=pod_id).exclude(provider_instance_id=""):
        driver("local").terminate(machine.provider_instance_id)


if __name__ == "__main__":
    main()
