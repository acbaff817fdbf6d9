"""A local pod's first process, inside its sandbox (a script, not a module: the sandbox sees this one
file, read-only, and the platform's Python with its packages, never the platform's code or data).

It keeps the pod's command running like a container with restart policy "always" (started again
after 1, 2, 4 ... 30 s; the count in $HOME/.gpucloud/restarts, which the driver reports), and with
`--ssh-port` serves SSH there for the keys in $PUBLIC_KEY only (asyncssh): each session is a shell
(or the command asked) in this same sandbox, as the pod's user, with a terminal when one is asked
for; SFTP and scp work. The host key is made at the first start and kept on the container disk.
SIGTERM stops the command (SIGKILL after 2 s) and the server, and the process exits.

    python3 pod_init.py [--ssh-port N --ssh-host ADDR] [--chdir DIR] -- COMMAND ARGS...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
from pathlib import Path

import asyncssh

STOP_GRACE_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ssh-port", type=int, default=0)
    parser.add_argument("--ssh-host", default="127.0.0.1")
    parser.add_argument("--chdir", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("a pod needs a command", file=sys.stderr)
        return 2
    if args.chdir:
        os.chdir(args.chdir)
    return asyncio.run(_run(command, args.ssh_host, args.ssh_port))


async def _run(command: list[str], ssh_host: str, ssh_port: int) -> int:
    state = Path(os.environ.get("HOME", ".")) / ".gpucloud"
    state.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await _ssh_serve(state, ssh_host, ssh_port) if ssh_port else None
    try:
        await _keep_running(command, state, stop)
    finally:
        if server is not None:
            server.close()
    return 0


async def _keep_running(command: list[str], state: Path, stop: asyncio.Event) -> None:
    restarts, backoff = 0, 1.0
    while True:
        child = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)
        waiting = asyncio.ensure_future(child.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            await _end(child)
            return
        stopping.cancel()
        print(f"[gpucloud] the command exited with status {child.returncode}; restarting in {backoff:.0f} s",
              flush=True)  # fmt: skip
        restarts += 1
        (state / "restarts").write_text(str(restarts))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
            return
        backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)


async def _end(child: asyncio.subprocess.Process) -> None:
    if child.returncode is not None:
        return
    child.terminate()
    try:
        await asyncio.wait_for(child.wait(), STOP_GRACE_SECONDS)
    except TimeoutError:
        child.kill()
        await child.wait()


# --- SSH -------------------------------------------------------------------------------------------


async def _ssh_serve(state: Path, host: str, port: int) -> asyncssh.SSHAcceptor | None:
    keys = os.environ.get("PUBLIC_KEY", "").strip()
    if not keys:
        print("[gpucloud] no SSH keys given: SSH is off", flush=True)
        return None
    host_key_path = state / "ssh_host_ed25519_key"
    if not host_key_path.exists():
        host_key_path.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        host_key_path.chmod(0o600)
    return await asyncssh.listen(
        host, port, server_host_keys=[str(host_key_path)], authorized_client_keys=asyncssh.import_authorized_keys(keys),
        process_factory=_session, encoding=None, sftp_factory=_SFTPServer, allow_scp=True,
    )  # fmt: skip


class _SFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server, ending its session with exit status 0 as OpenSSH's sftp-server does: a
    session closed without one fails OpenSSH's scp (SFTP is its protocol from 9.0), the file copied."""

    def exit(self) -> None:
        self.channel.exit(0)


async def _session(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """A login shell, or the command the client asked for, with a terminal when it asked for one. Each
    session is marked (the platform's idle round reads the mark: a pod in use over SSH is not idle)."""
    (Path(os.environ.get("HOME", ".")) / ".gpucloud" / "last_ssh_session").touch()
    argv = ["/bin/bash", "-l"] if process.command is None else ["/bin/bash", "-lc", process.command]
    if process.get_terminal_type():
        primary, secondary = pty.openpty()
        cols, rows, *_ = process.get_terminal_size()
        if cols and rows:
            fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        child = await asyncio.create_subprocess_exec(
            *argv, stdin=secondary, stdout=secondary, stderr=secondary, preexec_fn=_own_terminal
        )
        os.close(secondary)
        await process.redirect(stdin=os.dup(primary), stdout=primary)
    else:
        pipe = asyncio.subprocess.PIPE
        child = await asyncio.create_subprocess_exec(*argv, stdin=pipe, stdout=pipe, stderr=pipe)
        await process.redirect(stdin=child.stdin, stdout=child.stdout, stderr=child.stderr)
    process.exit(await child.wait())


def _own_terminal() -> None:
    """In the child: a session of its own with the terminal as its controlling one (job control works)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


if __name__ == "__main__":
    sys.exit(main())
