"""Issue 17: pods on the local provider. No container runtime here: a pod's command runs in a
bubblewrap sandbox (sandbox.py) with its volume at the mount path, supervised like a container that
restarts when its command exits; other images are refused, and without bubblewrap it still runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from fleet.providers.base import InstanceSpec, InstanceState, ProviderError, VolumeSpec
from fleet.providers.local import driver as local_driver
from fleet.providers.local.driver import LocalDriver
from fleet.providers.local.pod import INIT_SCRIPT
from fleet.providers.local.sandbox import sandboxed

TAG = f"pod-test-{uuid.uuid4().hex[:8]}"  # per process: xdist workers never see each other's pods
SANDBOXED = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[LocalDriver]:
    config = {"slots": 2, "instances_dir": str(tmp_path / "i"), "volumes_dir": str(tmp_path / "v"), "tag": TAG}
    driver = LocalDriver(slug="local", config=config)
    yield driver
    for instance in driver.list_instances(TAG):
        driver.terminate(instance.provider_instance_id)


def pod(instance_id: str, script: str, **fields: object) -> InstanceSpec:
    defaults: dict[str, object] = {"image": "gpucloud/shell", "command": ["python3", "-c", script]}
    return InstanceSpec(
        instance_id=instance_id, tag=TAG, engine="container", model={}, served_model_name="", api_key="secret-k",
        gpu_type="cpu", **{**defaults, **fields},  # type: ignore[arg-type]
    )  # fmt: skip


def eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


REPORT = """
import json, os, pathlib, socket, sys, time
probe = {"uid": os.getuid(), "cwd": os.getcwd(), "home": os.environ.get("HOME"),
         "platform_env": sorted(k for k in os.environ if k.startswith(("DATABASE", "REDIS", "DJANGO", "STRIPE"))),
         "port": os.environ.get("PORT_8888"), "key": os.environ.get("PUBLIC_KEY")}
for target in ("/usr/escape", "/etc/escape"):
    try:
        open(target, "w")
        probe[target] = "written"
    except OSError:
        probe[target] = "refused"
pathlib.Path("/workspace/report.json").write_text(json.dumps(probe))
server = socket.socket(); server.bind(("127.0.0.1", int(os.environ["PORT_8888"]))); server.listen()
while True:
    connection, _ = server.accept(); connection.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\npod says hi"); connection.close()
"""


@SANDBOXED
def test_a_pod_runs_sandboxed_with_its_volume_its_ports_and_none_of_the_platforms_secrets(
    driver: LocalDriver,
) -> None:
    volume = driver.volume_create(VolumeSpec(volume_id="vol_a", tag=TAG, name="a", size_gb=1, region="local"))
    offer = driver.offers()[0]
    spec = pod(
        "inst_p1", REPORT, volume_id=volume.provider_volume_id, ports=[8888], ssh_public_keys=["ssh-ed25519 AAAA x"]
    )
    launched = driver.launch(spec, offer)
    assert launched.state == InstanceState.RUNNING
    report_file = driver.volumes.data_path("vol_a") / "report.json"
    eventually(report_file.exists)
    report = json.loads(report_file.read_text())
    assert report["uid"] == 1000 and report["cwd"] == "/workspace" and report["home"] == "/home/pod"
    assert report["platform_env"] == [] and report["key"] == "ssh-ed25519 AAAA x"
    assert report["/usr/escape"] == report["/etc/escape"] == "refused"
    assert not Path("/usr/escape").exists()
    assert driver.endpoint("inst_p1") == f"http://127.0.0.1:{report['port']}"  # its first port, mapped here
    eventually(lambda: _answers(driver.endpoint("inst_p1")))
    assert driver.offers()[0].available == 1  # a pod takes a slot like an engine

    started = time.monotonic()
    driver.terminate("inst_p1")
    assert time.monotonic() - started < 3.5  # the command stops on SIGTERM (or is killed after 2 s)
    gone = driver.status("inst_p1")
    assert gone.state == InstanceState.TERMINATED and gone.ended_at is not None
    assert report_file.exists()  # the volume keeps what the pod wrote


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).text == "pod says hi"
    except httpx.HTTPError:
        return False


def test_a_command_that_exits_is_restarted_and_counted(driver: LocalDriver) -> None:
    driver.launch(pod("inst_p2", "print('once', flush=True)"), driver.offers()[0])
    eventually(lambda: driver.status("inst_p2").restarts >= 2, timeout=30)  # after 1 s, then 2 s (a busy machine: more)
    status = driver.status("inst_p2")
    assert status.state == InstanceState.RUNNING  # kept running, like a container with restart=always
    assert "restarting in" in "\n".join(driver.logs("inst_p2"))
    assert driver.logs("inst_p2").count("once") >= 2


def test_without_bubblewrap_a_pod_runs_as_a_plain_process_in_its_volume(
    driver: LocalDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_driver, "bwrap_path", lambda: None)
    driver.volume_create(VolumeSpec(volume_id="vol_b", tag=TAG, name="b", size_gb=1, region="local"))
    script = "import os, pathlib, time; pathlib.Path('here.txt').write_text(os.environ['HOME']); time.sleep(60)"
    driver.launch(pod("inst_p3", script, volume_id="vol_b"), driver.offers()[0])
    written = driver.volumes.data_path("vol_b") / "here.txt"
    eventually(written.exists)
    assert written.read_text() == str(driver.instances_dir / "inst_p3" / "disk")


def test_other_images_and_missing_volumes_are_refused_before_anything_runs(driver: LocalDriver) -> None:
    assert driver.image_refusal("gpucloud/shell") is None
    refusal = driver.image_refusal("pytorch/pytorch:2.4.0-cuda12.4")
    assert refusal is not None and "no container runtime" in refusal
    with pytest.raises(ProviderError, match="no container runtime") as refused:
        driver.launch(pod("inst_p4", "pass", image="pytorch/pytorch:2.4.0-cuda12.4"), driver.offers()[0])
    assert refused.value.permanent
    with pytest.raises(ProviderError, match="vol_zz is not on this machine"):
        driver.launch(pod("inst_p5", "pass", volume_id="vol_zz"), driver.offers()[0])
    assert driver.list_instances(TAG) == []


def keypair(where: Path, name: str) -> tuple[Path, str]:
    """A fresh ed25519 key as ssh-keygen writes it: the private key's file and the public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = where / name
    private.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    private.chmod(0o600)
    return private, key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode() + f" {name}"


def ssh(port: int, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "pod@127.0.0.1", command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@SANDBOXED
@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's client is not installed")
def test_ssh_opens_a_shell_in_the_pods_sandbox_for_its_keys_only(driver: LocalDriver, tmp_path: Path) -> None:
    own, own_line = keypair(tmp_path, "own")
    stranger, _ = keypair(tmp_path, "stranger")
    driver.volume_create(VolumeSpec(volume_id="vol_s", tag=TAG, name="s", size_gb=1, region="local"))
    (driver.volumes.data_path("vol_s") / "notes.txt").write_text("from the volume\n")
    spec = pod("inst_ssh", "import time; time.sleep(600)", volume_id="vol_s", ports=[22], ssh_public_keys=[own_line])
    driver.launch(spec, driver.offers()[0])
    host, port = driver.tcp_endpoint("inst_ssh", 22)
    assert host == "127.0.0.1"

    deadline = time.monotonic() + 15
    while (answer := ssh(port, own, "id -u; pwd; cat notes.txt; ps -e -o comm=")).returncode != 0:
        assert time.monotonic() < deadline, answer.stderr
        time.sleep(0.2)
    uid, cwd, notes, *processes = answer.stdout.splitlines()
    assert (uid, cwd, notes) == ("1000", "/workspace", "from the volume")  # the pod's user, in its volume
    assert "python" in processes and len(processes) < 10  # its own processes only: the same sandbox
    assert not {"postgres", "redis-server", "uvicorn"} & set(processes)  # not this machine's
    assert ssh(port, own, "touch /usr/x").returncode != 0  # read-only system, as for the pod's command
    assert ssh(port, own, "exit 7").returncode == 7
    assert driver.last_activity("inst_ssh") is not None  # sessions are activity: the pod is not idle
    refused = ssh(port, stranger, "true")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr


@SANDBOXED
@pytest.mark.skipif(shutil.which("scp") is None, reason="OpenSSH's scp is not installed")
def test_scp_and_sftp_copy_files_and_succeed(driver: LocalDriver, tmp_path: Path) -> None:
    """OpenSSH's scp speaks SFTP by default (9.0 on) and fails a copy whose session ends without an exit
    status, as asyncssh's SFTP server ended it: the file arrived, yet scp exited 1."""
    own, own_line = keypair(tmp_path, "own")
    driver.volume_create(VolumeSpec(volume_id="vol_c", tag=TAG, name="c", size_gb=1, region="local"))
    spec = pod("inst_scp", "import time; time.sleep(600)", volume_id="vol_c", ports=[22], ssh_public_keys=[own_line])
    driver.launch(spec, driver.offers()[0])
    _, port = driver.tcp_endpoint("inst_scp", 22)
    eventually(lambda: ssh(port, own, "true").returncode == 0)
    local = tmp_path / "up.txt"
    local.write_text("copied up\n")
    options = ["-i", str(own), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
               "BatchMode=yes", "-P", str(port)]  # fmt: skip
    for mode, name in (([], "sftp-mode.txt"), (["-O"], "scp-mode.txt")):  # SFTP (the default), legacy scp
        copied = subprocess.run(["scp", *mode, *options, str(local), f"pod@127.0.0.1:/workspace/{name}"],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert copied.returncode == 0, (mode, copied.stderr)
        assert (driver.volumes.data_path("vol_c") / name).read_text() == "copied up\n"
    down = tmp_path / "down.txt"
    fetched = subprocess.run(["scp", *options, "pod@127.0.0.1:/workspace/sftp-mode.txt", str(down)],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
    assert fetched.returncode == 0 and down.read_text() == "copied up\n", fetched.stderr


@SANDBOXED
def test_what_the_sandbox_binds_under_tmp_stays_visible_over_its_private_tmp(tmp_path: Path) -> None:
    """A platform installed under /tmp (a fresh clone there, these tests' directories): its Python and
    images are bound on top of the sandbox's private /tmp, not hidden by it."""
    images = tmp_path / "images"
    (images / "jupyterlab").mkdir(parents=True)
    (images / "jupyterlab" / "marker").write_text("seen")
    disk = tmp_path / "disk"
    disk.mkdir()
    argv = sandboxed(["/bin/cat", str(images / "jupyterlab" / "marker")], disk=disk, volume=None,
                     mount_path="/workspace", hostname="t", bwrap=str(shutil.which("bwrap")), init=INIT_SCRIPT,
                     images=images)  # fmt: skip
    assert str(images).startswith("/tmp/")  # noqa: S108 - the case: a path under the host's /tmp
    seen = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert (seen.returncode, seen.stdout) == (0, "seen"), seen.stderr
