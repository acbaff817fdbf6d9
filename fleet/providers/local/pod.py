"""One local pod: its command, sandboxed (sandbox.py), kept running like a container with a restart
policy of "always" (a command that exits is started again after 1, 2, 4 ... 30 s; the count is in
`restarts` beside the log, which the driver reports).

Run by the local driver as
  python -m fleet.providers.local.pod --instance-id ID --tag TAG --port N --workdir DIR
      [--volume DIR --mount-path PATH] [--bwrap PATH] -- COMMAND ARGS...
with the pod's environment as its own (nothing of the platform's). The tag and instance id are on the
command line so that the driver finds its pods again after a restart, as it finds engines. A stop
(SIGTERM) is passed to the command, which gets 2 s before it is killed. Free of Django.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from fleet.providers.local.sandbox import sandboxed

STOP_GRACE_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0
RESTARTS_FILE = "restarts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--volume", type=Path)
    parser.add_argument("--mount-path", default="/workspace")
    parser.add_argument("--bwrap", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("a pod needs a command", file=sys.stderr)
        return 2
    disk = args.workdir / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    if args.bwrap:
        command = sandboxed(command, disk=disk, volume=args.volume, mount_path=args.mount_path,
                            hostname=args.instance_id.replace("_", "-"), bwrap=args.bwrap)  # fmt: skip
        cwd, env = disk, dict(os.environ)
    else:  # not isolated (sandbox.py): a plain process in the volume, HOME on the container disk
        cwd, env = args.volume or disk, {**os.environ, "HOME": str(disk)}

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    restarts, backoff = 0, 1.0
    while True:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL)  # noqa: S603 - the owner's, sandboxed
        while child.poll() is None and not stop.wait(0.2):
            pass
        if stop.is_set():
            return _ended(child)
        print(f"[gpucloud] the command exited with status {child.returncode}; restarting in {backoff:.0f} s",
              flush=True)  # fmt: skip
        restarts += 1
        (args.workdir / RESTARTS_FILE).write_text(str(restarts))
        if stop.wait(backoff):
            return 0
        backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)


def _ended(child: subprocess.Popen[bytes]) -> int:
    """Stop the command: SIGTERM, then SIGKILL after the grace."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
