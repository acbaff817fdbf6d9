"""How a local pod's command is isolated: bubblewrap (Debian's `bubblewrap`) where it is installed.

In the sandbox the pod sees a root of its own: the system's /usr and /etc, this platform's Python
and the local images' environments (JupyterLab) read-only; its container disk at /home/pod (its
HOME) and its volume at the mount path, writable; a private /tmp, /proc (its own process ids) and
/dev; its own hostname; no capabilities, an unprivileged user (uid 1000 in a user namespace). Not
isolated: the network (it shares this machine's, so its ports are reachable on loopback, as the
platform's proxy needs), CPU, memory and disk use (no cgroup limits), and the GPU (this machine has
none).

Without bubblewrap the command runs as a plain process with its working directory on the volume and
HOME on its container disk: nothing else is isolated, and the README says so.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HOME = "/home/pod"
INIT_IN_SANDBOX = (
    "/.gpucloud/pod_init.py"  # the pod's first process (pod_init.py): one of the two files of ours it sees
)
ENGINE_IN_SANDBOX = (
    "/.gpucloud/engine.py"  # the llama.cpp engine (engine.py, free of Django): the gpucloud/llama-cpp image
)
SANDBOX_UID = 1000
_SYSTEM_LINKS = {"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/sbin"}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def sandboxed(
    command: list[str],
    *,
    disk: Path,
    volume: Path | None,
    mount_path: str,
    hostname: str,
    bwrap: str,
    init: Path,
    images: Path | None = None,
) -> list[str]:
    """The command line that runs `command` inside bubblewrap as described above."""
    argv = [bwrap, "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--ro-bind-try", "/opt", "/opt"]
    for link, target in _SYSTEM_LINKS.items():
        argv += ["--symlink", target, link]
    private_tmp = "/tmp"  # noqa: S108 - a fresh tmpfs inside the sandbox, not the host's /tmp
    # The private /tmp first: a platform installed under /tmp keeps its Python visible, bound on top.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", private_tmp]
    for prefix in sorted({sys.base_prefix, sys.prefix}):  # this platform's Python, read-only
        if not prefix.startswith("/usr/"):
            argv += ["--ro-bind", prefix, prefix]
    if images is not None:  # the images' own environments (JupyterLab), read-only
        argv += ["--ro-bind-try", str(images), str(images)]
    argv += ["--bind", str(disk), HOME]
    argv += ["--ro-bind", str(init), INIT_IN_SANDBOX, "--ro-bind", str(init.with_name("engine.py")), ENGINE_IN_SANDBOX]
    if volume is not None:
        argv += ["--bind", str(volume), mount_path]
    argv += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", hostname[:63],
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
        "--die-with-parent", "--chdir", mount_path if volume is not None else HOME, "--setenv", "HOME", HOME,
        "--", *command,
    ]  # fmt: skip
    return argv
