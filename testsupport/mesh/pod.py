"""A pod of the mesh world: a network namespace, and what runs in it.

``call``/``connect``/``request``/``probe`` act from inside the pod in the test's own
process (a thread in the pod's namespace, as root: the pod's capture applies);
``exec``/``spawn`` run programs there (``ip netns exec``: the pod's /etc/hosts), as root
or as another user; ``start_sidecar`` runs Envoy as the proxy user with its admin API on
a Unix socket in the pod's directory, which the test reaches from the root namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap
from testsupport._process import ManagedProcess
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.mesh import netns
from testsupport.mesh.capture import PROXY_GID, PROXY_UID, nat_table
from testsupport.mesh.netns import NetnsThreads
from testsupport.mesh.probe import read_report
from testsupport.wait import wait_until

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("probe.py")


class MeshError(RuntimeError):
    """The world could not be built, or not entirely removed."""


def run_as(uid: int, gid: int | None = None) -> list[str]:
    """Run the rest of a command line as ``uid``/``gid`` with no supplementary groups.

    The process keeps one capability, CAP_DAC_READ_SEARCH: the venv's Python and Envoy
    may sit below a directory only root may enter (a home directory), and what the
    capture rules look at is the UID alone. It is also killed when its parent dies
    (setpriv sets that after changing the UID, which would otherwise clear it).
    """
    group = uid if gid is None else gid
    return [
        netns.tool("setpriv"),
        f"--reuid={uid}",
        f"--regid={group}",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--pdeathsig=KILL",
        "--",
    ]


@dataclass(eq=False)
class Pod:
    """One pod: a network namespace with an IP on the world's bridge.

    ``call``/``connect``/``request`` act from inside the pod in this process, as root (so
    the pod's capture applies); ``exec``/``spawn`` run programs there, optionally as
    another user, with the pod's /etc/hosts.
    """

    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    netns: str
    capture: bool
    directory: Path  # owned by the proxy user: sockets, ready files, logs
    xds_address: str  # where its sidecar finds pilotfish
    processes: list[ManagedProcess] = field(default_factory=list)
    sidecars: list[EnvoyProcess] = field(default_factory=list)
    _threads: NetnsThreads | None = None

    # -- acting from inside the pod, in this process ----------------------------------

    @property
    def threads(self) -> NetnsThreads:
        if self._threads is None:
            self._threads = NetnsThreads(self.netns)
        return self._threads

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on a thread inside this pod's network namespace (as root)."""
        return self.threads.call(fn, *args, **kwargs)

    def connect(self, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        """A TCP connection opened from this pod (root's, so captured where capture is on)."""
        return self.call(socket.create_connection, address, timeout)

    def probe(self, address: tuple[str, int], timeout: float = 5.0) -> dict[str, Any]:
        """Connect from this pod to ``address`` and read a probe's report (probe.py)."""
        with self.connect(address, timeout) as conn:
            return read_report(conn)

    def resolve(self, host: str) -> str:
        """``host`` as this pod resolves it: an IP as is, else from the pod's hosts file."""
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(host))
        for line in self.hosts_path.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) > 1 and host in fields[1:]:
                return fields[0]
        raise MeshError(f"{host!r} is not in {self.name}'s hosts file {self.hosts_path}")

    def request(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | str | None = None,
        timeout: float = 10.0,
    ) -> Response:
        """An HTTP request from inside this pod; a host name in ``url`` is resolved as the
        pod would (its hosts file) and sent as the Host header."""
        parts = urlsplit(url)
        address = (self.resolve(parts.hostname or ""), parts.port or 80)
        return self.call(request, url, headers, method, body, timeout, connect_to=address)

    # -- programs in the pod -------------------------------------------------------------

    def command(self, argv: Sequence[str], uid: int | None = None) -> list[str]:
        """``argv`` as run in this pod (as ``uid``, else root)."""
        prefix = netns.exec_prefix(self.netns)
        return [*prefix, *(run_as(uid) if uid is not None else []), *argv]

    def exec(
        self,
        argv: Sequence[str],
        uid: int | None = None,
        input: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a program in this pod to completion (with the pod's /etc/hosts)."""
        done = subprocess.run(
            self.command(argv, uid),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO_ROOT,
        )
        if check and done.returncode != 0:
            raise MeshError(
                f"{self.name}: {' '.join(argv)} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def spawn(self, argv: Sequence[str], name: str, uid: int | None = None) -> ManagedProcess:
        """Start a long-running program in this pod; stopped by the world's ``close()``.

        Its output goes to ``<pod dir>/<name>.log``; it runs in the repository's root, so
        ``python -m testsupport.x`` works.
        """
        proc = ManagedProcess(
            self.command(argv, uid), self.directory / f"{name}.log", cwd=REPO_ROOT
        )
        self.processes.append(proc)
        return proc

    def start_probe(
        self, ports: Sequence[int], uid: int | None = PROXY_UID, label: str = ""
    ) -> ManagedProcess:
        """probe.py listening on ``ports`` (by default as the proxy user, as Envoy would)."""
        label = label or f"{self.name}:{','.join(map(str, ports))}"
        ready = self.directory / f"probe-{secrets.token_hex(3)}.ready"
        argv = [sys.executable, str(PROBE), "--label", label, "--ready-file", str(ready)]
        for port in ports:
            argv += ["--port", str(port)]
        proc = self.spawn(argv, f"probe-{'-'.join(map(str, ports))}", uid)
        wait_until(
            lambda: ready.exists() or not proc.running(),
            timeout=15,
            message=lambda: f"{self.name}: probe on {ports} did not start: {proc.log_tail()}",
        )
        if not proc.running():
            raise MeshError(f"{self.name}: probe on {ports} exited: {proc.log_tail()}")
        return proc

    # -- the sidecar ---------------------------------------------------------------------

    @property
    def admin_socket(self) -> Path:
        """Where this pod's sidecar serves its admin API."""
        return self.directory / "admin.sock"

    def bootstrap_options(self, **overrides: Any) -> BootstrapOptions:
        """What ``pilotfish bootstrap --type sidecar`` is told for this pod."""
        values: dict[str, Any] = {
            "proxy_type": "sidecar",
            "name": self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "ip": self.ip,
            "xds_address": self.xds_address,
            "admin_socket": str(self.admin_socket),
        }
        return BootstrapOptions(**(values | overrides))

    def bootstrap_args(self) -> list[str]:
        """The same as ``pilotfish bootstrap`` command-line arguments."""
        opts = self.bootstrap_options()
        labels = ",".join(f"{k}={v}" for k, v in opts.labels.items())
        return [
            "bootstrap",
            "--type=sidecar",
            f"--name={opts.name}",
            f"--namespace={opts.namespace}",
            f"--labels={labels}",
            f"--ip={opts.ip}",
            f"--xds-address={opts.xds_address}",
            f"--admin-socket={opts.admin_socket}",
        ]

    def start_sidecar(
        self,
        bootstrap: Mapping[str, Any] | None = None,
        *,
        log_level: str = "info",
        component_log_level: str | None = None,
        concurrency: int = 1,
        extra_args: Sequence[str] = (),
    ) -> EnvoyProcess:
        """Envoy as this pod's sidecar: in the pod, as UID/GID 1337, admin on
        ``admin_socket``. ``bootstrap``: default ``render_bootstrap(bootstrap_options())``;
        ``extra_args``: more Envoy options (e.g. ``--drain-time-s``, which Istio's agent
        sets from drainDuration). Returns once its admin API answers; ``wait_ready()``
        waits for its config."""
        config = render_bootstrap(self.bootstrap_options()) if bootstrap is None else bootstrap
        with contextlib.suppress(FileNotFoundError):
            self.admin_socket.unlink()  # a previous sidecar's
        envoy = EnvoyProcess(
            config,
            name=f"sidecar-{self.name}",
            log_level=log_level,
            component_log_level=component_log_level,
            concurrency=concurrency,
            extra_args=extra_args,
            command_prefix=self.command([], uid=PROXY_UID),
            workdir_owner=(PROXY_UID, PROXY_GID),
        )
        self.sidecars.append(envoy)
        return envoy.start()

    # -- inspection ----------------------------------------------------------------------

    @property
    def hosts_path(self) -> Path:
        return netns.etc_dir(self.netns) / "hosts"

    def nat_table(self) -> str:
        return nat_table(self.netns)

    # -- teardown ------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop its programs; the problems met (teardown goes on regardless)."""
        problems: list[str] = []
        for envoy in self.sidecars:
            try:
                envoy.stop()
            except Exception as exc:
                problems.append(f"{envoy.name}: {exc!r}")
        for proc in self.processes:
            try:
                proc.stop(grace=2.0)
            except Exception as exc:
                problems.append(f"{self.name}: {proc.argv[-1]}: {exc!r}")
        if self._threads is not None:
            self._threads.shutdown()
        return problems
