"""A mesh of pods without Kubernetes: network namespaces, a bridge, iptables capture.

- **Pod**: a network namespace ``pfm-<run>-<pod>`` with loopback up and ``eth0``, one end
  of a veth pair whose other end is on the bridge, holding the pod's IP in the run's /24.
- **Bridge**: ``br0`` in a namespace of its own (``pfm-<run>--br``), so nothing of the world
  appears in the root namespace; pods reach each other's IPs through it, nothing else.
- **Services**: cluster IPs from a second /24 that exist on no interface. Each pod routes
  that /24 out of ``eth0`` (the route only has to exist: the packet's destination is
  rewritten by the pod's iptables before it leaves). What kube-proxy does is done in each
  pod's nat OUTPUT chain, after the capture rules (kube_proxy.py): a connection to a
  cluster IP that no sidecar took (a sidecar's passthrough, a pod without capture) goes
  to one of the Service's pods; ``write_registry`` keeps those rules current.
- **Names**: /etc/netns/<netns>/hosts, which ``ip netns exec`` shows as /etc/hosts: the
  pod's own name; ``<svc>``, for Services of the pod's namespace; ``<svc>.<ns>``,
  ``<svc>.<ns>.svc`` and ``<svc>.<ns>.svc.cluster.local`` for all; extra names (``add_host``).
- **Capture**: Istio's nat rules (capture.py) in every pod made with ``capture=True``;
  the sidecar Envoy runs as UID/GID 1337, so its own traffic is not captured.
- **pilotfish**: in-process in the test (root namespace), serving xDS on a Unix socket in
  the run's directory. Namespaces share the filesystem, so every pod's Envoy reaches the
  same socket, the way Istio's Envoy reaches its agent over ``./etc/istio/proxy/XDS``;
  no interface or route ties the world to the root namespace.
- **Upstreams outside the mesh** (an "external" server for egress tests) are processes in
  a pod made with ``capture=False`` (no sidecar), named with ``add_host``.
- **Admin API**: each sidecar's on a Unix socket in its pod's directory, so the test
  process polls it from the root namespace as any other Envoy (testsupport/envoy.py).

Everything carries the run's prefix and is removed by ``close()`` even after failures;
a run that crashed (its lock released with its process) is swept by the next world.
Needs root, ``ip`` (iproute2), ``iptables`` and ``setpriv`` (util-linux).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import yaml

from testsupport.mesh import kube_proxy, manifests, netns
from testsupport.mesh.capture import PROXY_GID, PROXY_UID, install_capture
from testsupport.mesh.pod import MeshError, Pod
from testsupport.mesh.sweep import RUNS_DIR, remove_run, run_leftovers, run_prefix, sweep_leftovers
from testsupport.pilotfish import InProcessPilotfish

BRIDGE = "br0"


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = "http"
    target_port: int | None = None  # None: the same as port
    protocol: str = "TCP"
    app_protocol: str | None = None

    @property
    def target(self) -> int:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    cluster_ip: str | None  # None: headless (its name resolves to its pods' IPs)
    ports: tuple[ServicePort, ...]
    selector: Mapping[str, str]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"

    def selects(self, pod: Pod) -> bool:
        return bool(self.selector) and all(pod.labels.get(k) == v for k, v in self.selector.items())


def _pick_networks() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """A pod /24 and a service /24 for this run, e.g. 10.77.5.0/24 and 10.141.5.0/24.

    They live only inside the run's namespaces, so runs never clash even on equal
    choices; random ones keep two runs' logs apart.
    """
    second, third = 64 + secrets.randbelow(64), secrets.randbelow(256)
    return (
        ipaddress.IPv4Network(f"10.{second}.{third}.0/24"),
        ipaddress.IPv4Network(f"10.{second + 64}.{third}.0/24"),
    )


class MeshWorld:
    """The world of one test module: ``with MeshWorld() as world: world.add_pod(...)``."""

    def __init__(self) -> None:
        self.run_id = secrets.token_hex(3)
        self.prefix = run_prefix(self.run_id)
        self.pod_network, self.service_network = _pick_networks()
        self.directory = RUNS_DIR / self.run_id
        self.config_dir = self.directory / "config"  # pilotfish's file source
        self.xds_socket = self.directory / "xds.sock"
        self.bridge_netns = f"{self.prefix}-br"
        self.pods: dict[str, Pod] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.extra_hosts: dict[str, str] = {}
        self.pilotfish: InProcessPilotfish | None = None
        self._pod_ips = (str(ip) for ip in list(self.pod_network.hosts())[9:])
        self._service_ips = (str(ip) for ip in list(self.service_network.hosts())[9:])
        self._lock: IO[str] | None = None
        self._created_netns: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        sweep_leftovers()
        try:
            self._take_directory()
            netns.add_netns(self.bridge_netns)
            self._created_netns.append(self.bridge_netns)
            netns.ip("link", "add", BRIDGE, "type", "bridge", netns=self.bridge_netns)
            netns.ip("link", "set", BRIDGE, "up", netns=self.bridge_netns)
        except BaseException:
            self.close()
            raise
        return self

    def _take_directory(self) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        self.directory.mkdir(mode=0o755)
        self._lock = open(self.directory / "lock", "w")  # noqa: SIM115 - held until close()
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (self.directory / "pods").mkdir()
        self.config_dir.mkdir()

    def close(self) -> None:
        """Remove everything of this run; raise MeshError listing what could not be."""
        problems: list[str] = []
        for pod in self.pods.values():
            problems += pod.stop()
        if self.pilotfish is not None:
            try:
                self.pilotfish.stop()
            except Exception as exc:
                problems.append(f"pilotfish: {exc!r}")
            self.pilotfish = None
        problems += remove_run(self.run_id, self._created_netns)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if problems:
            raise MeshError("mesh teardown left problems:\n" + "\n".join(problems))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- building the world --------------------------------------------------------------

    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        labels: Mapping[str, str] | None = None,
        *,
        capture: bool = True,
    ) -> Pod:
        """A pod with its own IP; ``capture``: Istio's iptables rules (a sidecar pod)."""
        if name in self.pods:
            raise MeshError(f"pod {name!r} exists (pod names are unique in a world)")
        ns = f"{self.prefix}{name}"
        ip = next(self._pod_ips)
        directory = self.directory / "pods" / name
        directory.mkdir()
        os.chown(directory, PROXY_UID, PROXY_GID)
        pod = Pod(name, namespace, dict(labels or {}), ip, ns, capture, directory, self.xds_address)
        self.pods[name] = pod
        netns.add_netns(ns)
        self._created_netns.append(ns)
        veth = f"veth{len(self.pods)}"
        netns.ip(
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            netns=self.bridge_netns,
        )  # fmt: skip
        netns.ip("link", "set", veth, "master", BRIDGE, "up", netns=self.bridge_netns)
        netns.ip("addr", "add", f"{ip}/{self.pod_network.prefixlen}", "dev", "eth0", netns=ns)
        netns.ip("link", "set", "eth0", "up", netns=ns)
        netns.ip("route", "add", str(self.service_network), "dev", "eth0", netns=ns)
        netns.write_etc_file(ns, "resolv.conf", "# no DNS server in the mesh world\n")
        self._write_hosts()
        if capture:
            install_capture(ns)
        kube_proxy.install_chain(ns)
        return pod

    def add_service(
        self,
        name: str,
        namespace: str = "default",
        ports: Sequence[ServicePort] = (ServicePort(9080),),
        selector: Mapping[str, str] | None = None,
        *,
        headless: bool = False,
    ) -> Service:
        """A Service with a cluster IP (on no interface), or ``headless``: its names
        resolve to the IPs of the pods it selects. Selector default ``app: name``."""
        if (namespace, name) in self.services:
            raise MeshError(f"service {namespace}/{name} exists")
        service = Service(
            name,
            namespace,
            None if headless else next(self._service_ips),
            tuple(ports),
            dict({"app": name} if selector is None else selector),
        )
        self.services[(namespace, name)] = service
        self._write_hosts()
        return service

    def add_host(self, name: str, ip: str) -> None:
        """One more name in every pod's hosts file (e.g. an "external" server's)."""
        self.extra_hosts[name] = ip
        self._write_hosts()

    def hosts_file(self, pod: Pod) -> str:
        """What ``pod`` sees as /etc/hosts: what cluster DNS would answer it."""
        lines = ["127.0.0.1 localhost", f"{pod.ip} {pod.name}"]
        for svc in self.services.values():
            names = [f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc", svc.fqdn]
            if svc.namespace == pod.namespace:
                names.insert(0, svc.name)
            if svc.cluster_ip is not None:
                addresses = [svc.cluster_ip]
            else:
                addresses = [p.ip for p in self.pods.values() if svc.selects(p)]
            lines += [f"{address} {' '.join(names)}" for address in addresses]
        lines += [f"{ip} {name}" for name, ip in self.extra_hosts.items()]
        return "\n".join(lines) + "\n"

    def _write_hosts(self) -> None:
        for pod in self.pods.values():
            netns.write_etc_file(pod.netns, "hosts", self.hosts_file(pod))

    # -- pilotfish's view of the world --------------------------------------------------

    def registry_manifests(self) -> list[dict[str, Any]]:
        """Services, EndpointSlices (ready pods the selector picks) and Pods, as
        Kubernetes would show them to pilotfish."""
        docs: list[dict[str, Any]] = []
        pods = list(self.pods.values())
        for svc in self.services.values():
            docs.append(manifests.service(svc))
            docs.append(manifests.endpoint_slice(svc, [p for p in pods if svc.selects(p)]))
        docs += [manifests.pod(p) for p in pods]
        return docs

    def write_config(self, filename: str, docs: Sequence[Mapping[str, Any]]) -> Path:
        """Write manifests into pilotfish's config directory (atomically: one change)."""
        path = self.config_dir / filename
        tmp = self.config_dir / f".{filename}.tmp"
        tmp.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
        tmp.replace(path)
        return path

    def write_registry(self) -> Path:
        """The registry for pilotfish, and kube-proxy's rules in every pod to match."""
        rules = kube_proxy.service_rules(self.services.values(), list(self.pods.values()))
        for pod in self.pods.values():
            kube_proxy.program(pod.netns, rules)
        return self.write_config("registry.yaml", self.registry_manifests())

    @property
    def xds_address(self) -> str:
        return f"unix:{self.xds_socket}"

    def start_pilotfish(self, **options: Any) -> InProcessPilotfish:
        """pilotfish in this process over ``config_dir``, xDS on ``xds_socket``."""
        if self.pilotfish is not None:
            raise MeshError("pilotfish already runs in this world")
        self.pilotfish = InProcessPilotfish(
            self.config_dir, xds_address=self.xds_address, **options
        )
        self.pilotfish.start()
        return self.pilotfish

    # -- inspection ----------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Anything of this run still on the machine (empty after ``close()``)."""
        return run_leftovers(self.run_id)
