"""One local pod, as the local driver starts it: its first process (pod_init.py: the command kept
running, the SSH server) in its sandbox (sandbox.py), or without bubblewrap as a plain process.

Run by the local driver as
  python -m fleet.providers.local.pod --instance-id ID --tag TAG --port N --workdir DIR
      [--volume DIR --mount-path PATH] [--bwrap PATH] [--ssh-port N --ssh-host ADDR] -- COMMAND ARGS...
with the pod's environment as its own (nothing of the platform's). The tag and instance id are on the
command line so that the driver finds its pods again after a restart, as it finds engines. A stop
(SIGTERM) is passed on; pod_init gives the command 2 s. Free of Django.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from fleet.providers.local.sandbox import ENGINE_IN_SANDBOX, INIT_IN_SANDBOX, sandboxed

INIT_SCRIPT = Path(__file__).with_name("pod_init.py")
RESTARTS_FILE = Path("disk") / ".gpucloud" / "restarts"  # under the workdir: the container disk's HOME
ACTIVITY_FILE = Path("disk") / ".gpucloud" / "last_ssh_session"  # touched by pod_init at each SSH session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--volume", type=Path)
    parser.add_argument("--mount-path", default="/workspace")
    parser.add_argument("--bwrap", default="")
    parser.add_argument("--images", type=Path)
    parser.add_argument("--ssh-port", type=int, default=0)
    parser.add_argument("--ssh-host", default="127.0.0.1")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("a pod needs a command", file=sys.stderr)
        return 2
    disk = args.workdir / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    ssh = ["--ssh-port", str(args.ssh_port), "--ssh-host", args.ssh_host] if args.ssh_port else []
    if args.bwrap:
        inner = [sys.executable, INIT_IN_SANDBOX, *ssh, "--", *command]
        hostname = args.instance_id.replace("_", "-")
        argv_run = sandboxed(inner, disk=disk, volume=args.volume, mount_path=args.mount_path, hostname=hostname,
                             bwrap=args.bwrap, init=INIT_SCRIPT, images=args.images)  # fmt: skip
        env = {**os.environ, "GPUCLOUD_ENGINE_SCRIPT": ENGINE_IN_SANDBOX}
    else:  # not isolated (sandbox.py): a plain process in the volume, HOME on the container disk; no SSH
        if ssh:
            print("[gpucloud] SSH needs bubblewrap on the local provider: it is off", flush=True)
        where = str(args.volume or disk)
        argv_run = [sys.executable, str(INIT_SCRIPT), "--chdir", where, "--", *command]
        env = {**os.environ, "HOME": str(disk), "GPUCLOUD_ENGINE_SCRIPT": str(INIT_SCRIPT.with_name("engine.py"))}
    child = subprocess.Popen(argv_run, env=env, stdin=subprocess.DEVNULL)  # noqa: S603 - the owner's, sandboxed
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    signal.signal(signal.SIGINT, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
