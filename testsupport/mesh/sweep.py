"""Finding and removing what a run of the mesh world leaves on the machine.

Each live world holds an exclusive lock on ``/run/pilotfish-mesh/<run>/lock``; the lock
dies with its process, so a run whose lock can be taken has crashed. Everything of a run
carries its prefix ``pfm-<run>-`` (namespaces, /etc/netns entries).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from testsupport.mesh import netns

RUNS_DIR = Path("/run/pilotfish-mesh")  # one directory per live world, holding its lock
NETNS_PREFIX = "pfm-"
# A world younger than this may not have taken its lock yet: the sweep leaves it alone.
_LOCK_GRACE = 60.0


def run_prefix(run_id: str) -> str:
    return f"{NETNS_PREFIX}{run_id}-"


def _run_of(name: str) -> str | None:
    """The run id in ``pfm-<run>-...``, else None."""
    if not name.startswith(NETNS_PREFIX):
        return None
    return name[len(NETNS_PREFIX) :].split("-", 1)[0] or None


def run_leftovers(run_id: str) -> list[str]:
    prefix = run_prefix(run_id)
    found = [f"netns {n}" for n in netns.list_netns() if n.startswith(prefix)]
    with contextlib.suppress(FileNotFoundError):
        found += [f"{p}" for p in netns.ETC_NETNS.iterdir() if p.name.startswith(prefix)]
    if (RUNS_DIR / run_id).exists():
        found.append(str(RUNS_DIR / run_id))
    return found


def remove_run(run_id: str, known_netns: Sequence[str] = ()) -> list[str]:
    """Delete a run's namespaces (killing what runs there), /etc/netns entries and
    directory; the problems met."""
    prefix = run_prefix(run_id)
    problems: list[str] = []
    names = {*known_netns, *(n for n in netns.list_netns() if n.startswith(prefix))}
    with contextlib.suppress(FileNotFoundError):
        names |= {p.name for p in netns.ETC_NETNS.iterdir() if p.name.startswith(prefix)}
    for name in sorted(names):
        try:
            netns.delete_netns(name)
        except Exception as exc:
            problems.append(f"netns {name}: {exc}")
    shutil.rmtree(RUNS_DIR / run_id, ignore_errors=True)
    problems += [f"still there: {item}" for item in run_leftovers(run_id)]
    return problems


def _is_abandoned(run_dir: Path) -> bool:
    """True when no live world holds the run's lock."""
    lock = run_dir / "lock"
    if not lock.exists():
        return time.time() - run_dir.stat().st_mtime > _LOCK_GRACE
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def sweep_leftovers() -> list[str]:
    """Remove what crashed runs left behind (their lock died with them); the run ids.

    A run's directory exists before its first namespace and after its last one, so a
    namespace or /etc/netns entry whose run has no directory is abandoned too.
    """
    swept: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for run_dir in RUNS_DIR.iterdir():
            if run_dir.is_dir() and _is_abandoned(run_dir):
                swept.add(run_dir.name)
    names = list(netns.list_netns())
    with contextlib.suppress(FileNotFoundError):
        names += [p.name for p in netns.ETC_NETNS.iterdir()]
    for name in names:
        run_id = _run_of(name)
        if run_id and not (RUNS_DIR / run_id).exists():
            swept.add(run_id)
    for run_id in sorted(swept):
        remove_run(run_id)
    return sorted(swept)
