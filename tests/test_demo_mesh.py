"""`make demo-mesh` refuses to run without root, saying why, and exits non-zero."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


def test_without_root_it_says_so_and_exits_non_zero() -> None:
    argv = [sys.executable, "-m", "demo.mesh"]
    if os.geteuid() == 0:  # drop to an unprivileged user, as a developer would run it
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to run as another user"
        argv = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "needs root" in done.stderr
    assert "network namespaces" in done.stderr
    assert done.stdout == ""  # nothing was built
