"""Linux network namespaces: the `ip` commands, and threads that live inside a namespace.

A network namespace belongs to a *thread*: ``setns(2)`` moves only the calling thread. So
a test can act from inside a pod without starting a process: a worker thread enters the
pod's namespace once, and every socket it creates lives there for good (the socket keeps
its namespace even when used from another thread). Name lookups are the exception: they
read the root filesystem's /etc/hosts, not the pod's (``ip netns exec`` bind-mounts that
one in a mount namespace of its own, which a thread cannot enter).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")  # where `ip netns add` mounts named namespaces
ETC_NETNS = Path("/etc/netns")  # per-namespace files `ip netns exec` bind-mounts over /etc
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace command failed; the message holds the command and what it said."""


def tool(name: str) -> str:
    """The path of a system command, looking in the sbin directories too: ``ip`` and
    ``iptables`` live there, which a non-login root shell's PATH may lack."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        hint = " (`make install` installs Debian's iptables)" if "iptables" in name else ""
        raise NetnsError(f"{name} not found{hint}")
    return found


def run(argv: Sequence[str], input: str | None = None, timeout: float = 30.0) -> str:
    """Run a command to completion; its stdout, or NetnsError with its stderr."""
    argv = [tool(argv[0]), *argv[1:]]
    done = subprocess.run(
        argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def ip(*args: str, netns: str | None = None) -> str:
    """``ip [-n NETNS] ARGS...``."""
    return run(["ip", *(["-n", netns] if netns else []), *args])


def exec_prefix(netns: str) -> list[str]:
    """Run the rest of a command line in ``netns`` (with its /etc/netns/<name> files)."""
    return [tool("ip"), "netns", "exec", netns]


def list_netns() -> list[str]:
    """Names of every named network namespace on the machine."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(p.name for p in NETNS_DIR.iterdir())
    return []


def add_netns(name: str) -> None:
    ip("netns", "add", name)
    # Loopback starts down in a new namespace; 127.0.0.1 must work as in any pod.
    ip("link", "set", "lo", "up", netns=name)


def netns_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    try:
        out = run(["ip", "netns", "pids", name])
    except NetnsError:
        return []
    return [int(pid) for pid in out.split()]


def kill_netns_processes(name: str) -> list[int]:
    """SIGKILL every process still in ``name``; the PIDs that were there."""
    pids = netns_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def delete_netns(name: str) -> None:
    """Kill what runs in ``name``, delete it and its /etc/netns/<name> files."""
    kill_netns_processes(name)
    if name in list_netns():
        ip("netns", "delete", name)
    remove_etc_files(name)


def etc_dir(name: str) -> Path:
    return ETC_NETNS / name


def write_etc_file(netns: str, filename: str, text: str) -> Path:
    """Write /etc/netns/<netns>/<filename>, which `ip netns exec` shows as /etc/<filename>.

    Written in place, never replaced: a process started earlier sees the file through a
    bind mount of this very inode, so a new inode would stay invisible to it.
    """
    path = etc_dir(netns) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        f.seek(0)
        f.truncate()
        f.write(text)
    return path


def remove_etc_files(netns: str) -> None:
    directory = etc_dir(netns)
    if directory.is_dir():
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


def enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name``."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into network namespace {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NetnsThreads:
    """A thread pool whose threads live in one network namespace.

    ``call(fn, ...)`` runs ``fn`` there (as this process's user: root) and returns its
    result; several calls may run at once (up to ``workers``).
    """

    def __init__(self, netns: str, workers: int = 16) -> None:
        self.netns = netns
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=f"netns-{netns}",
            initializer=enter_netns,
            initargs=(netns,),
        )

    def submit(
        self, fn: Callable[..., T], *args: object, **kwargs: object
    ) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args, **kwargs)

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return self.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        # Calls still running (a request waiting on a dead peer) finish on their own
        # timeouts; their sockets die with the namespace.
        self._pool.shutdown(wait=False, cancel_futures=True)
