"""Child processes that never outlive the test run.

Three layers, because each covers a way the others fail: callers stop children in
``finally``/``__exit__`` (test failures); an ``atexit`` hook stops whatever is still
running (a forgotten ``stop()``); and on Linux the kernel sends SIGKILL to the child
when pytest itself dies (``kill -9``, a thread-method timeout), via PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

# Strong references: a process its owner forgot (never stopped, object dropped) is still
# stopped at exit.
_live: set[ManagedProcess] = set()


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL --`: the child is killed if this process dies.

    Not a preexec_fn: that forces a real fork() running Python in the child, where
    gRPC's fork handlers abort the child when gRPC threads are live in this process
    (tests run pilotfish's gRPC server in-process). Without preexec_fn, Popen spawns
    without running any of that. The kernel ties PDEATHSIG to the *thread* that forked,
    so only the main thread uses it (a worker thread's exit would kill the child early).
    """
    if not sys.platform.startswith("linux"):
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")  # util-linux: on every Debian machine
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class ManagedProcess:
    """A subprocess whose stdout and stderr go to ``log_path``."""

    def __init__(self, argv: Sequence[str], log_path: Path, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                [*_pdeathsig_prefix(), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
        except BaseException:
            self._log.close()
            raise
        _live.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            return self.proc.returncode
        finally:
            self._log.close()
            _live.discard(self)

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(grace=1.0)
