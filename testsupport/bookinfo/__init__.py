"""Istio's bookinfo sample in the mesh world: its services, pods and labels, small apps.

The same Service names, port 9080 (named ``http``) and ``app``/``version`` labels as
Istio's ``samples/bookinfo/platform/kube/bookinfo.yaml``; one pod per version
(``reviews-v1``...), each running app.py, which answers with its name and version and
makes the calls the real service makes. ``deploy(world)`` builds it all and writes the
registry pilotfish reads (Services, EndpointSlices with the pod IPs, Pods).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from testsupport.envoy import EnvoyProcess
from testsupport.http import Response
from testsupport.mesh import MeshError, MeshWorld, Pod, Service, ServicePort
from testsupport.wait import wait_until

PORT = 9080
APP = Path(__file__).with_name("app.py")


@dataclass(frozen=True)
class Workload:
    """One Deployment of the sample: ``<service>-<version>``."""

    service: str
    version: str
    calls: tuple[str, ...] = ()  # app.py --call values: NAME[:TIMEOUT[:ATTEMPTS]]
    options: tuple[str, ...] = ()  # more app.py arguments, e.g. ("--fail-every=2",)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.version}


SERVICES = ("details", "ratings", "reviews", "productpage")
WORKLOADS = (
    Workload("details", "v1"),
    Workload("ratings", "v1"),
    Workload("reviews", "v1"),
    Workload("reviews", "v2", ("ratings:10",)),
    Workload("reviews", "v3", ("ratings:10",)),
    Workload("productpage", "v1", ("details:3:1", "reviews:3:2")),
)


@dataclass
class Bookinfo:
    world: MeshWorld
    namespace: str
    services: dict[str, Service]
    pods: dict[str, Pod]  # by workload name: "reviews-v2"
    sidecars: dict[str, EnvoyProcess]  # by workload name, when deployed with sidecars

    def pod(self, service: str, version: str = "v1") -> Pod:
        return self.pods[f"{service}-{version}"]

    def url(self, service: str, path: str = "/") -> str:
        """``http://<service>:9080<path>``, as a pod of the namespace calls it."""
        return f"http://{service}:{PORT}{path}"

    def get(
        self, source: Pod, service: str, path: str = "/", headers: Mapping[str, str] | None = None
    ) -> Response:
        """GET a bookinfo service from inside ``source`` (through its sidecar, if any)."""
        return source.request(self.url(service, path), headers=headers)


def app_command(workload: Workload, pod: Pod, ready_file: Path, status: int = 200) -> list[str]:
    argv = [
        sys.executable,
        str(APP),
        f"--service={workload.service}",
        f"--version={workload.version}",
        f"--pod={pod.name}",
        f"--ready-file={ready_file}",
        f"--status={status}",
    ]
    return argv + [f"--call={c}" for c in workload.calls] + list(workload.options)


def start_app(pod: Pod, workload: Workload, status: int = 200) -> None:
    """app.py for ``workload`` in ``pod`` (as root, like the sample's containers' users:
    anyone but the proxy's 1337); returns once it listens."""
    ready = pod.directory / f"{workload.name}.ready"
    ready.unlink(missing_ok=True)
    proc = pod.spawn(app_command(workload, pod, ready, status), workload.name)
    wait_until(
        lambda: ready.exists() or not proc.running(),
        timeout=15,
        message=lambda: f"{workload.name} did not start: {proc.log_tail()}",
    )
    if not proc.running():
        raise MeshError(f"{workload.name} exited: {proc.log_tail()}")


def deploy(
    world: MeshWorld,
    namespace: str = "default",
    *,
    sidecars: bool = True,
    headless: bool = False,
    workloads: Sequence[Workload] = WORKLOADS,
) -> Bookinfo:
    """Services, pods (capture on when ``sidecars``), apps, the registry for pilotfish;
    with ``sidecars``, a sidecar per pod connected to the world's pilotfish (started if
    it is not running). ``headless`` Services resolve to pod IPs: the apps then reach
    each other without any proxy (the first pod of a name answers)."""
    port = [ServicePort(PORT, "http")]
    services = {
        name: world.add_service(name, namespace, port, headless=headless) for name in SERVICES
    }
    pods: dict[str, Pod] = {}
    for workload in workloads:
        pod = world.add_pod(workload.name, namespace, workload.labels, capture=sidecars)
        pods[workload.name] = pod
        start_app(pod, workload)
    world.write_registry()
    proxies: dict[str, EnvoyProcess] = {}
    if sidecars:
        if world.pilotfish is None:
            world.start_pilotfish()
        for name, pod in pods.items():
            proxies[name] = pod.start_sidecar()
        for proxy in proxies.values():
            proxy.wait_ready()
    return Bookinfo(world, namespace, services, pods, proxies)


def add_workload(
    world: MeshWorld,
    workload: Workload,
    namespace: str = "default",
    *,
    port: int = PORT,
    sidecar: bool = True,
    service: bool = True,
    capture: bool | None = None,
    sidecar_args: Sequence[str] = (),
) -> tuple[Pod, EnvoyProcess | None]:
    """One more app.py workload beside the sample (a flaky service, a slow one, an
    "external" server): its pod (captured when ``capture``, by default when ``sidecar``),
    its Service on ``port`` (named ``http``) unless ``service`` is false, the registry
    rewritten, its sidecar started (with Envoy options ``sidecar_args``) and ready."""
    capture = sidecar if capture is None else capture
    pod = world.add_pod(workload.name, namespace, workload.labels, capture=capture)
    if service and (namespace, workload.service) not in world.services:
        world.add_service(workload.service, namespace, [ServicePort(port, "http")])
    start_app(pod, replace(workload, options=(*workload.options, f"--port={port}")))
    world.write_registry()
    if not sidecar:
        return pod, None
    if world.pilotfish is None:
        world.start_pilotfish()
    envoy = pod.start_sidecar(extra_args=sidecar_args)
    envoy.wait_ready()
    return pod, envoy
